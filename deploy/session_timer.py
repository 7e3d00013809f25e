"""CPU latency (ONNX Runtime, OpenVINO) as a deployment sees it: each model alone, in a fresh process of its own.

Timed in one process, interleaved, five models' ratios to the baseline moved with the order their sessions were
created (one read 0.64 of the baseline in one order and 1.00 in the other, docs/BENCHMARKS.md, slimming round 7);
one process per measurement gave 0.67 and 0.68. A fresh process leaves nothing else there (no other session's
threads, no torch threads of the caller); interleaving the models round by round spreads a slow spell of a
shared machine over all of them (the same file read 14.4 and 22.3 ms ten minutes apart: compare ratios).
The child is this module run with ``python -m`` (not multiprocessing's spawn, which re-runs the caller's main
script); timing the model alone, an ONNX Runtime child imports only numpy and onnxruntime, so it starts quickly.
OpenVINO rows, and every end-to-end timing (decode, letterbox, model, NMS: ``deploy.bench``'s second column), run
through the deployment's own backend classes, so they are timed with the settings val and predict use.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

# ONNX Runtime CPU (its default threads: every core, as a batch-1 deployment runs it); ONNX Runtime on one thread
# (what an image costs a throughput deployment that runs one process per core); OpenVINO FP32, or bf16/f16 inference.
# On a shared machine the all-core figure moves with what the host gives the second core (a slimmed model read
# 0.69 or 0.75 of its parent's time, minutes apart); the one-thread figure stays put (0.65; docs/BENCHMARKS.md,
# slimming round 15).
RUNTIMES = ("ort", "ort-1thread", "openvino", "openvino-half")
# This module is also the timing child (python -m deploy.session_timer), started once per model and round: its
# imports stay inside the functions that need them, so an ONNX Runtime child loads numpy and onnxruntime alone
# (torch and the detector's modules only for OpenVINO and end-to-end rows). tests/test_layers.py knows why.


def _deployed(path: str, runtime: str):
    """The backend val and predict use for ``runtime`` (OpenVINO at its precision, or ONNX Runtime)."""
    import torch  # lazy: the timing child imports only what its row runs

    from detect.infer.runtimes import load_deployed

    return load_deployed(path, torch.device("cpu"), half=runtime == "openvino-half",
                         backend="onnxruntime" if runtime == "ort" else "openvino")


def _runner(path: str, runtime: str):
    """One inference call on a numpy batch: ONNX Runtime's ``session.run`` on all cores or one thread (numpy
    and onnxruntime only), or OpenVINO through the deployment's backend (its own settings: threads, precision)."""
    if runtime in ("ort", "ort-1thread"):
        import onnxruntime as ort  # lazy: the timing child imports only what its row runs

        options = ort.SessionOptions()
        if runtime == "ort-1thread":
            options.intra_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    return _deployed(path, runtime).run


def end_to_end_call(backend, image: Path, shape: tuple[int, int], batch: int):
    """One call of the whole pipeline on ``batch`` copies of ``image``: JPEG decode, letterbox, ``backend``
    (a detector backend: torch tensor in, raw predictions out), NMS at predict's defaults."""
    import cv2  # lazy: the timing child imports only what its row runs
    import torch

    from detect.boxes import non_max_suppression, prepare_image
    from detect.data.dataset import to_tensor

    def call():
        frames = [cv2.imread(str(image)) for _ in range(batch)]
        x = torch.stack([to_tensor(prepare_image(f, max(shape), 32, shape=shape)[0]) for f in frames]).float().div(255)
        with torch.inference_mode():
            non_max_suppression(backend(x), 0.25, 0.45)

    return call


def _timed(call, iters: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def time_session(path: str, shape: tuple[int, ...], iters: int, warmup: int, runtime: str = "ort",
                 image: str | None = None) -> dict[str, list[float] | None]:
    """Seconds per call of the ONNX file at ``path`` (CPU): ``model``, inference on a random input of
    ``shape``; with ``image``, ``end_to_end`` too (``end_to_end_call``, through the backend val and predict
    use, after the model loop: one session serves both)."""
    import numpy as np  # lazy: the timing child imports only what its row runs

    if runtime not in RUNTIMES:
        raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
    if image is not None and runtime == "ort-1thread":
        raise ValueError("runtime 'ort-1thread' times the model alone: end-to-end timing runs the deployment's "
                         "backends at their own thread settings")
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    if image is None:
        run = _runner(path, runtime)
        return {"model": _timed(lambda: run(x), iters, warmup), "end_to_end": None}
    from detect.infer.threads import settled_cpu_threads

    backend = _deployed(path, runtime)
    with settled_cpu_threads([backend]):  # as val and predict run it
        model = _timed(lambda: backend.run(x), iters, warmup)
        pipeline = end_to_end_call(backend, Path(image), tuple(shape[2:]), shape[0])
        return {"model": model, "end_to_end": _timed(pipeline, iters, warmup)}


def _interleaved(files: dict[str, Path], shape: tuple[int, ...], rounds: int, iters: int, warmup: int,
                 runtimes: dict[str, str] | None, image: Path | None) -> dict[str, list[dict]]:
    """Every file's ``time_session`` in a fresh process, ``rounds`` rounds of all files in turn."""
    results: dict[str, list[dict]] = {key: [] for key in files}
    for _ in range(rounds):
        for key, path in files.items():
            runtime = (runtimes or {}).get(key, "ort")
            cmd = [sys.executable, "-m", __name__, str(path), str(iters), str(warmup), runtime, str(image or "-"),
                   *map(str, shape)]
            child = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
            if child.returncode != 0:
                raise RuntimeError(f"timing {path} ({runtime}) failed: {child.stderr.strip()[-500:]}")
            results[key].append(json.loads(child.stdout))
    return results


def time_isolated(files: dict[str, Path], shape: tuple[int, ...], rounds: int = 5, iters: int = 20,
                  warmup: int = 5, runtimes: dict[str, str] | None = None) -> dict[str, list[list[float]]]:
    """Model latency of every file, each in a fresh process, interleaved over ``rounds``.
    ``runtimes``: key -> one of RUNTIMES (default "ort"). Returns key -> one list of call times per round."""
    results = _interleaved(files, shape, rounds, iters, warmup, runtimes, None)
    return {key: [r["model"] for r in per_round] for key, per_round in results.items()}


def time_isolated_pipeline(files: dict[str, Path], image: Path, shape: tuple[int, ...], rounds: int = 5,
                           iters: int = 20, warmup: int = 5, runtimes: dict[str, str] | None = None
                           ) -> dict[str, dict[str, list[list[float]]]]:
    """``time_isolated`` plus the end-to-end pipeline on ``image`` in the same processes.
    Returns key -> {"model": per-round call times, "end_to_end": per-round call times}."""
    results = _interleaved(files, shape, rounds, iters, warmup, runtimes, image)
    return {key: {part: [r[part] for r in per_round] for part in ("model", "end_to_end")}
            for key, per_round in results.items()}


def median_ms(per_round: list[list[float]]) -> float:
    """The median of the rounds' medians, in milliseconds: one slow round moves it little."""
    return 1000 * statistics.median(statistics.median(r) for r in per_round)


if __name__ == "__main__":  # the child: PATH ITERS WARMUP RUNTIME IMAGE|- DIM... -> JSON seconds on stdout
    path, iters, warmup, runtime, image, *dims = sys.argv[1:]
    print(json.dumps(time_session(path, tuple(map(int, dims)), int(iters), int(warmup), runtime,
                                  None if image == "-" else image)))
