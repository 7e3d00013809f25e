"""What a figure was measured on: the CPU model and the instruction sets that decide CPU inference speed.

The machines these benchmarks run on change between sessions (some have AVX512-VNNI/BF16 and AMX, some
only AVX2), so every recorded latency names them (docs/BENCHMARKS.md)."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

import torch

SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16")  # INT8 / BF16 paths


@cache
def _cpuinfo_lines() -> tuple[str, ...]:
    try:
        return tuple(Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:  # not Linux
        return ()


def _cpuinfo(key: str) -> str | None:
    """The first ``key: value`` of /proc/cpuinfo (read once per process)."""
    return next((ln.split(":", 1)[1].strip() for ln in _cpuinfo_lines() if ln.split(":", 1)[0].strip() == key), None)


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo (the processor string elsewhere)."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    return set((_cpuinfo("flags") or "").split())


def machine_info() -> dict:
    """The fields every benchmark JSON records."""
    flags = cpu_flags()
    return {"cpu": cpu_model(), "isa": [f for f in SPEED_FLAGS if f in flags], "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
