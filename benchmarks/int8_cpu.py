"""INT8 and OpenVINO on the CPU against ONNX Runtime FP32: latency and mAP, measured in one run.

    python benchmarks/int8_cpu.py --out runs/bench/int8 [--weights yolov5n.pt pruned.pt yolov5s] \\
        [--data coco128/data.yaml] [--img 384 640] [--batches 1 8] [--rounds 5 --iters 20]

For each model: deploy.export at the shape (fixed batch 1 and 8), then deploy.quantize's
export_int8 (calibrated on the data's training images, defaults of ``deploy.export --int8``).
Rows: ONNX Runtime FP32 / INT8, OpenVINO FP32 / BF16 (inference hint, where the CPU has it) /
INT8 (the same QDQ file). Latency: each row in a fresh process (deploy.session_timer), rows interleaved
round by round, ``--iters`` runs each per round, p50/p90 over all, and the ratio of the rounds' median
to ONNX Runtime FP32's, same model and batch.
mAP50-95 on the val split at the export shape. Writes OUT/summary.json and prints Markdown.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from deploy.bench import weights_or_scale  # noqa: E402
from deploy.export import export  # noqa: E402
from deploy.quantize import export_int8  # noqa: E402
from deploy.session_timer import median_ms, time_isolated  # noqa: E402
from detect.evaluate import fixed_shape_map  # noqa: E402
from detect.infer.runtimes import OnnxBackend, OpenVinoBackend  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.paths import shared_dir  # noqa: E402

ROWS = [("ONNX Runtime FP32", "model.onnx", "ort"), ("ONNX Runtime INT8", "model_int8.onnx", "ort"),
        ("OpenVINO FP32", "model.onnx", "openvino"), ("OpenVINO BF16", "model.onnx", "openvino-half"),
        ("OpenVINO INT8", "model_int8.onnx", "openvino")]  # label, file, deploy.session_timer runtime


def make(runtime: str, path: Path):
    cpu = torch.device("cpu")
    return OnnxBackend(path, cpu) if runtime == "ort" else OpenVinoBackend(path, cpu, runtime == "openvino-half")


def prepare(weights: Path, data: str, shape, batches, out: Path, method: str = "percentile") -> dict:
    """Exports per batch; INT8 calibrated once (batch 1) and its ranges reused for the other batches."""
    dirs = {}
    for b in batches:
        d = out / f"{weights.stem}_b{b}"
        done = export(weights, d, tuple(shape), b)
        fp32, meta = done.fp32, done.meta
        if dirs:
            first = next(iter(dirs.values()))
            for f in ("model_int8.calib.json", "model_int8.calib.key"):
                shutil.copy(first / f, d / f)
        t = time.perf_counter()
        r = export_int8(fp32, data, meta, method=method, evaluate_map=False)
        print(f"{d.name}: INT8 in {time.perf_counter() - t:.0f} s, error {r['error']}", flush=True)
        dirs[b] = d
    return dirs


def accuracy(dirs: dict, data: str) -> dict:
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split

    cfg = load_data_config(data)
    samples, _ = scan_split(cfg, "val", progress=False)
    d = dirs[min(dirs)]
    out = {}
    for label, file, runtime in ROWS:
        b = make(runtime, d / file)
        out[label] = fixed_shape_map(b, samples, cfg.names, b.fixed_shape)
        print(label, out[label], flush=True)
    return out


def latency(models: dict, batch: int, shape, rounds: int, iters: int) -> dict:
    """Every row in a fresh process of its own, rows interleaved round by round (deploy.session_timer: in one
    process, live sessions' ratios moved with the order they were created)."""
    keys = {f"{name}|{label}": (dirs[batch] / file, runtime)
            for name, dirs in models.items() for label, file, runtime in ROWS}
    per_round = time_isolated({k: v[0] for k, v in keys.items()}, (batch, 3, *shape), rounds, iters, warmup=3,
                              runtimes={k: v[1] for k, v in keys.items()})
    out = {}
    for key, by_round in per_round.items():
        name, label = key.split("|")
        t = [x for r in by_round for x in r]
        base = median_ms(per_round[f"{name}|ONNX Runtime FP32"])
        out.setdefault(name, {})[label] = {"p50_ms": 1e3 * float(np.median(t)), "p90_ms": 1e3 * float(np.percentile(t, 90)),
                                           "ratio": median_ms(by_round) / base}
    return out


def main() -> int:
    faulthandler.enable()
    shared = shared_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/int8"))
    p.add_argument("--weights", nargs="+", default=[str(shared / "weights/yolov5n.pt")],
                   help=".pt files, or scale names (yolov5s): random weights, latency only (no mAP; calibration "
                   "may refuse untrained weights, docs/BENCHMARKS.md)")
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--img", type=int, nargs=2, default=[384, 640])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="percentile",
                   help="deploy.export --int8's; minmax calibrates random weights (a scale name) that the "
                   "histogram methods refuse, for a latency row")
    args = p.parse_args()
    machine = machine_info()
    summary = {"cpu": machine["cpu"], "isa": machine["isa"], "threads": machine["threads"],
               "date": time.strftime("%Y-%m-%d"), "shape": args.img,
               "calib_method": args.calib_method, "models": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    weights = {w: weights_or_scale(w, args.out) for w in args.weights}
    models = {path.stem: prepare(path, args.data, args.img, args.batches, args.out, args.calib_method)
              for path in weights.values()}
    # latency first, before this process holds any session; the summary saved after each phase (a run on
    # 2026-11-24 died by SIGSEGV after its 15 accuracy sessions, before timing: faulthandler names where)
    summary["models"] = {name: {"accuracy": None} for name in models}
    save = lambda: (args.out / "summary.json").write_text(json.dumps(summary, indent=1))  # noqa: E731
    for b in args.batches:
        for name, rows in latency(models, b, args.img, args.rounds, args.iters).items():
            summary["models"][name][f"batch{b}"] = rows
        save()
    for (given, path), dirs in zip(weights.items(), models.values()):
        if path == Path(given):  # else a scale name, built with random weights: its mAP means nothing
            summary["models"][path.stem]["accuracy"] = accuracy(dirs, args.data)
            save()
    print(f"\n{summary['cpu']} ({', '.join(summary['isa'])}), {summary['threads']} threads, {summary['date']}\n")
    head = ["model", "runtime", "mAP50-95"] + [f"b{b} {k}" for b in args.batches for k in ("p50 ms", "p90 ms", "× ORT FP32")]
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for name, m in summary["models"].items():
        for label, *_ in ROWS:
            cells = [name, label, f"{m['accuracy'][label]['map50_95']:.4f}" if m["accuracy"] else "-"]
            for b in args.batches:
                r = m[f"batch{b}"][label]
                cells += [f"{r['p50_ms']:.1f}", f"{r['p90_ms']:.1f}", f"{r['ratio']:.2f}"]
            print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
