"""CPU latency (ONNX Runtime, OpenVINO) as a deployment sees it: each model alone, in a fresh process of its own.

Timed in one process, interleaved, five models' ratios to the baseline moved with the order their sessions were
created (one read 0.64 of the baseline in one order and 1.00 in the other, docs/BENCHMARKS.md, slimming round 7);
one process per measurement gave 0.67 and 0.68. A fresh process leaves nothing else there (no other session's
threads, no torch threads of the caller); interleaving the models round by round spreads a slow spell of a
shared machine over all of them (the same file read 14.4 and 22.3 ms ten minutes apart: compare ratios).
The child is this module run with ``python -m`` (not multiprocessing's spawn, which re-runs the caller's main
script); an ONNX Runtime child imports only numpy and onnxruntime, so it starts quickly — which is also why its
timing loop does not reuse ``deploy.bench``'s (that module imports torch and OpenCV). OpenVINO rows run through
the deployment's own backend class, so they are timed with the settings val and predict use.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNTIMES = ("ort", "openvino", "openvino-half")  # ONNX Runtime CPU; OpenVINO FP32, or its bf16/f16 inference


def _runner(path: str, runtime: str):
    """One inference call on a numpy batch: ONNX Runtime's ``session.run`` (numpy and onnxruntime only), or
    OpenVINO through ``deploy.runtime.OpenVinoBackend`` (the deployment's own settings: threads, precision)."""
    if runtime == "ort":
        import onnxruntime as ort

        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    import torch

    from deploy.runtime import OpenVinoBackend

    return OpenVinoBackend(path, torch.device("cpu"), half=runtime == "openvino-half").run


def time_session(path: str, shape: tuple[int, ...], iters: int, warmup: int, runtime: str = "ort") -> list[float]:
    """Seconds per inference call of the ONNX file at ``path`` on a random input of ``shape`` (CPU)."""
    import numpy as np

    run = _runner(path, runtime)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return times


def time_isolated(files: dict[str, Path], shape: tuple[int, ...], rounds: int = 5, iters: int = 20,
                  warmup: int = 5, runtimes: dict[str, str] | None = None) -> dict[str, list[list[float]]]:
    """``time_session`` of every file in a fresh process, ``rounds`` rounds of all files in turn.
    ``runtimes``: key -> one of RUNTIMES (default "ort"). Returns key -> one list of call times per round."""
    times: dict[str, list[list[float]]] = {key: [] for key in files}
    for _ in range(rounds):
        for key, path in files.items():
            runtime = (runtimes or {}).get(key, "ort")
            cmd = [sys.executable, "-m", __name__, str(path), str(iters), str(warmup), runtime, *map(str, shape)]
            child = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if child.returncode != 0:
                raise RuntimeError(f"timing {path} ({runtime}) failed: {child.stderr.strip()[-500:]}")
            times[key].append(json.loads(child.stdout))
    return times


def median_ms(per_round: list[list[float]]) -> float:
    """The median of the rounds' medians, in milliseconds: one slow round moves it little."""
    return 1000 * statistics.median(statistics.median(r) for r in per_round)


if __name__ == "__main__":  # the child: PATH ITERS WARMUP RUNTIME DIM... -> a JSON list of seconds on stdout
    path, iters, warmup, runtime, *dims = sys.argv[1:]
    print(json.dumps(time_session(path, tuple(map(int, dims)), int(iters), int(warmup), runtime)))
