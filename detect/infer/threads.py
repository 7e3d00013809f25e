"""The CPU's threads between torch and a runtime with its own pool (ONNX Runtime, OpenVINO)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

CPU_RUNTIMES = ("onnxruntime", "openvino")  # run the model on thread pools of their own
_cpu_threads: int | None = None  # torch's threads before settled_cpu_threads lowered them


def unwrap(backend):
    """The runtime inside timing and TTA wrappers (each keeps the one it wraps as ``.backend``)."""
    while hasattr(backend, "backend"):
        backend = backend.backend
    return backend


def cpu_threads() -> int:
    """Threads for a CPU runtime's own pool: torch's count as it was before ``settled_cpu_threads``."""
    return _cpu_threads or torch.get_num_threads()


def _cpu_runtime(backend) -> bool:
    runtime = unwrap(backend)
    device = getattr(runtime, "device", None)
    return getattr(runtime, "name", "pytorch") in CPU_RUNTIMES and device is not None and device.type == "cpu"


@contextlib.contextmanager
def settled_cpu_threads(backends) -> Iterator[bool]:
    """Leave torch one thread while every backend runs its model in a CPU runtime (ONNX Runtime, OpenVINO).

    torch is then left with the pre- and post-processing, and its OpenMP workers, spinning after each small
    op, took the cores the runtime's threads needed: yolov5n in ONNX Runtime at 384x640, 52 ms end to end
    with 16 ms in the model; with torch on one thread, 30 ms, the model's time unchanged (docs/BENCHMARKS.md,
    INT8 round 5). A PyTorch member keeps every thread. Yields whether it settled; torch's count comes back on
    exit, so a caller of val or predict in process (a script, a test) does not train on one thread afterwards."""
    global _cpu_threads
    if not backends or not all(map(_cpu_runtime, backends)):
        yield False
        return
    before, saved = torch.get_num_threads(), _cpu_threads
    _cpu_threads = cpu_threads()
    torch.set_num_threads(1)
    try:
        yield True
    finally:
        torch.set_num_threads(before)
        _cpu_threads = saved
