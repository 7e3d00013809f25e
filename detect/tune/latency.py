"""The second objective of ``--objectives fitness latency``: a trial's model timed in ONNX Runtime on the CPU.

The trial's best.pt is traced to ONNX at img x img, batch 1 (the bare graph: no NMS, no decode of images)
and run on one thread, ``warmup`` times untimed and then ``iters`` times; the objective is the median in
milliseconds. One thread, because the all-core figure moves with what a shared machine gives the other cores
while the one-thread figure stays put (docs/BENCHMARKS.md, slimming round 15), and because it is what an
image costs a deployment that runs a process per core. The figure is this machine's: trials of one study must
run on CPUs of one model for their latencies to be compared (each trial records its host).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detect.infer.onnx_graph import export_onnx
from detect.weights import load_model


@dataclass(frozen=True)
class LatencyConfig:
    iters: int = 50  # timed runs; the median is the objective
    warmup: int = 10  # untimed runs first (ONNX Runtime allocates on its first calls)
    opset: int = 17


def onnx_latency_ms(weights: Path, img: int, config: LatencyConfig = LatencyConfig()) -> float:
    """Median milliseconds of one batch-1 img x img inference of ``weights`` in ONNX Runtime on one thread."""
    import onnxruntime as ort  # lazy: only a two-objective study needs it

    model, _ = load_model(weights, "cpu")
    with tempfile.TemporaryDirectory(prefix="tune-latency-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(model, path, (img, img), 1, False, config.opset)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, 3, img, img), dtype=np.float32)
    name = session.get_inputs()[0].name
    for _ in range(config.warmup):
        session.run(None, {name: x})
    times = []
    for _ in range(config.iters):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
