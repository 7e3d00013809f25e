"""Where an exported model's CPU time goes, per operator type: ONNX Runtime FP32 and INT8, OpenVINO FP32 / BF16 / INT8.

    python benchmarks/int8_profile.py DIR [--runs 30] [--batch 1]

DIR holds model.onnx and model_int8.onnx as ``python -m deploy.export --int8`` writes them (without
model_int8.onnx, the float rows only). ONNX Runtime's
profiler (kernel time per node of the graph it optimised: QLinearConv, QLinearSigmoid, fused QuickGelu...)
and OpenVINO's performance counters (per layer type and kernel: brgconv_avx512_I8, jit subgraphs, reorders)
after 10 warm-up runs, averaged over ``--runs``. Both profilers add their own overhead: read the *shares*,
and take latency ratios from benchmarks/int8_cpu.py. Writes DIR/profile.json and prints the top entries.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.infer.metadata import read_metadata  # noqa: E402
from detect.infer.runtimes import openvino_config  # noqa: E402

WARMUP = 10


def ort_profile(path: Path, x: np.ndarray, runs: int) -> dict[str, float]:
    """ms per run by the operator type ONNX Runtime executed (after its own graph fusions)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_name(f"ort_profile_{path.stem}"))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for _ in range(WARMUP + runs):
        session.run(None, {name: x})
    trace = Path(session.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per_op: collections.Counter = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / (WARMUP + runs)  # the profiler sees warm-up runs too
    return dict(per_op.most_common())


def openvino_profile(path: Path, x: np.ndarray, runs: int, half: bool) -> dict[str, float]:
    """ms per run by (layer type, kernel) in OpenVINO's CPU plugin, with the deployment's own settings."""
    import openvino as ov

    core = ov.Core()
    config = {**openvino_config(core, half), "PERF_COUNT": True}
    request = core.compile_model(str(path), "CPU", config).create_infer_request()
    for _ in range(WARMUP):
        request.infer({0: x})
    per_kind: collections.Counter = collections.Counter()
    for _ in range(runs):
        request.infer({0: x})
        for p in request.profiling_info:
            per_kind[f"{p.node_type} [{p.exec_type}]"] += p.real_time.total_seconds() * 1e3 / runs
    return dict(per_kind.most_common())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path, help="folder with model.onnx and, for the INT8 rows, model_int8.onnx (deploy.export --int8)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--batch", type=int, default=1, help="the batch to run where the files take any (--dynamic-batch)")
    args = p.parse_args()
    fp32, int8 = args.dir / "model.onnx", args.dir / "model_int8.onnx"
    shape = [args.batch if d < 0 else d for d in read_metadata(fp32)["input_shape"]]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    rows = {"ONNX Runtime FP32": lambda: ort_profile(fp32, x, args.runs),
            "ONNX Runtime INT8": lambda: ort_profile(int8, x, args.runs),
            "OpenVINO FP32": lambda: openvino_profile(fp32, x, args.runs, half=False),
            "OpenVINO BF16": lambda: openvino_profile(fp32, x, args.runs, half=True),
            "OpenVINO INT8": lambda: openvino_profile(int8, x, args.runs, half=False)}
    if not int8.is_file():  # a plain export (a pruned model's, say): the float rows alone
        print(f"{int8} not found: profiling the FP32 and BF16 rows only")
        rows = {label: measure for label, measure in rows.items() if "INT8" not in label}
    result = {"shape": shape, "runs": args.runs}
    for label, measure in rows.items():
        result[label] = measure()
        total = sum(result[label].values())
        print(f"\n{label}: {total:.2f} ms per run in kernels")
        for kind, ms in list(result[label].items())[:8]:
            print(f"  {ms:6.2f} ms  {100 * ms / total:4.1f}%  {kind}")
    (args.dir / "profile.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
