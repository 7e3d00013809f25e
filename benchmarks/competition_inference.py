"""What TTA, multi-size ensembles, slicing and the validation report do, measured in one run.

    python benchmarks/competition_inference.py --out runs/bench/competition \\
        [--official-python /tmp/offvenv/bin/python] [--synthetic-weights runs/demo/train/weights/best.pt]

coco128 val at 640 with the shared yolov5n.pt: plain, --augment, --img 640 800 fused by WBF
(max and ensemble-boxes' avg scores) and by NMS, and, with --official-python (a venv with
yolov5==7.0.14; recipe in docs/BENCHMARKS.md), official val.py plain and --augment, scored by
its own metric and by ours (its saved predictions). The embedded synthetic set (1920x1080
scenes, small far figures) with the demo model: whole images at 640 and 960 against 640x640
slices (+ the full pass) merged by our greedy NMM, by SAHI's unrestricted union, and by NMS;
AP by size and all-in time per image. Then the time of ``--report`` on coco128.
Writes OUT/summary.json and prints the Markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402

from detect.backend import load_backend  # noqa: E402
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.evaluate import TimedBackend, coco_results, predictor_detections  # noqa: E402
from detect.infer.predictor import InferenceConfig, Member, Predictor  # noqa: E402
from detect.machine import cpu_model  # noqa: E402
from detect.metrics import coco_ground_truth, evaluate  # noqa: E402
from detect.paths import shared_dir  # noqa: E402

VAL = InferenceConfig(conf=0.001, iou=0.6, max_det=300, multi_label=True, interpolation="area")
OFFICIAL = """
import numpy as np
np.trapz = np.trapezoid  # removed from numpy 2.x; the official metric still calls it
import yolov5.utils.general as g
g.check_font = lambda *a, **k: None  # downloads a font for plot labels; no network here
from yolov5 import val
r = val.run(data={data!r}, weights={weights!r}, imgsz=640, batch_size=16, device="cpu", plots=False,
            project={tmp!r}, name={name!r}, workers=2, augment={augment}, save_json=True)
print("RESULT", r[0][2], r[0][3])
"""


def measure(name, weights, sizes, config, samples, names, gt) -> dict:
    backend = TimedBackend(load_backend(weights, torch.device("cpu")))
    predictor = Predictor([Member(backend, s) for s in sizes], config)
    dets, seconds = predictor_detections(predictor, samples, 16, 2, progress=False)
    m = evaluate(gt, coco_results(dets), names)
    row = {"setting": name, **{k: m[k] for k in ("map50_95", "map50", "map_small", "map_medium", "map_large")},
           "ms_per_image": 1e3 * seconds["total"] / len(samples)}
    print(json.dumps(row), flush=True)
    return row


def coco128_rows(weights: str, data: str) -> tuple[list[dict], tuple]:
    cfg = load_data_config(data)
    samples, _ = scan_split(cfg, "val", progress=False)
    gt = coco_ground_truth(samples, cfg.names)
    runs = [
        ("plain 640", [640], VAL),
        ("--augment 640", [640], replace(VAL, augment=True)),
        ("--img 640 800 --fuse wbf (max)", [640, 800], VAL),
        ("--img 640 800 --fuse wbf --fuse-conf avg", [640, 800], replace(VAL, fuse_conf="avg")),
        ("--img 640 800 --fuse nms", [640, 800], replace(VAL, fuse="nms", fuse_iou=0.6)),
    ]
    return [measure(n, weights, s, c, samples, cfg.names, gt) for n, s, c in runs], (samples, cfg, gt)


def official_rows(python: str, weights: str, data: str, samples, cfg, gt) -> list[dict]:
    tmp = tempfile.mkdtemp()
    data_abs = Path(tmp) / "data.yaml"  # the official code resolves a relative path: against its own package
    data_abs.write_text(re.sub(r"(?m)^path:.*$", f"path: {Path(data).parent.resolve()}", Path(data).read_text()))
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "YOLOv5_AUTOINSTALL": "False"}
    index = {s.path.stem: i for i, s in enumerate(samples)}
    rows = []
    for augment in (False, True):
        name = f"official{'_augment' if augment else ''}"
        script = Path(tmp) / f"{name}.py"
        script.write_text(OFFICIAL.format(data=str(data_abs), weights=weights, tmp=tmp, name=name, augment=augment))
        t = time.perf_counter()
        log = subprocess.run([python, str(script)], capture_output=True, text=True, env=env, check=True)
        wall = time.perf_counter() - t
        m50, m5095 = map(float, re.search(r"RESULT ([\d.]+) ([\d.]+)", log.stdout + log.stderr).groups())
        preds = json.loads(next((Path(tmp) / name).glob("*_predictions.json")).read_text())
        ours = evaluate(gt, [{**p, "image_id": index[str(p["image_id"]).zfill(12)]} for p in preds], cfg.names)
        row = {"setting": f"official val.py{' --augment' if augment else ''}", "own_map50_95": m5095, "own_map50": m50,
               "map50_95": ours["map50_95"], "map50": ours["map50"], "process_wall_s": wall}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def synthetic_rows(weights: str, data: str) -> list[dict]:
    cfg = load_data_config(data)
    samples, _ = scan_split(cfg, "val", progress=False)
    gt = coco_ground_truth(samples, cfg.names)
    sliced = replace(VAL, slice_hw=(640, 640), slice_overlap=0.2)
    runs = [
        ("whole 640", [640], VAL),
        ("whole 960", [960], VAL),
        ("640 + slices 640x640, NMM (ours: grow with >= 0.9x score)", [640], sliced),
        ("640 + slices 640x640, NMS 0.5", [640], replace(sliced, slice_merge="nms")),
        ("slices 640x640 only (--no-full), NMM", [640], replace(sliced, full=False)),
        ("640 + slices 640x640, SAHI union (grow with any)", [640], replace(sliced, slice_grow=0.0)),
    ]
    return [measure(n, weights, s, c, samples, cfg.names, gt) for n, s, c in runs]


def report_time(weights: str, data: str, out: Path) -> dict:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "detect.val", "--weights", weights, "--data", data, "--workers", "2",
                    "--report", str(out / "report")], cwd=REPO, check=True, capture_output=True)
    total = time.perf_counter() - t
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "detect.val", "--weights", weights, "--data", data, "--workers", "2"],
                   cwd=REPO, check=True, capture_output=True)
    row = {"val_with_report_s": total, "val_s": time.perf_counter() - t}
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], keys: list[str]) -> str:
    fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) and v < 10 else (f"{v:.0f}" if isinstance(v, float) else str(v)))  # noqa: E731
    lines = ["| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows])


def main() -> int:
    shared = shared_dir()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/bench/competition"))
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--official-python", default=None, help="python of a venv with yolov5==7.0.14")
    p.add_argument("--synthetic-weights", default="runs/demo/train/weights/best.pt", help="the demo's model (make demo)")
    p.add_argument("--synthetic-data", default="data/synthetic/data.yaml")
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d"), "threads": torch.get_num_threads()}
    summary["coco128"], (samples, cfg, gt) = coco128_rows(args.weights, args.data)
    if args.official_python:
        summary["coco128"] += official_rows(args.official_python, args.weights, args.data, samples, cfg, gt)
    if Path(args.synthetic_weights).is_file():
        summary["synthetic"] = synthetic_rows(args.synthetic_weights, args.synthetic_data)
    summary["report"] = report_time(args.weights, args.data, args.out)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\n{summary['cpu']}, {summary['threads']} threads, {summary['date']}\n")
    print(table(summary["coco128"], ["setting", "map50_95", "map50", "map_small", "ms_per_image", "own_map50_95", "process_wall_s"]))
    if "synthetic" in summary:
        print()
        print(table(summary["synthetic"], ["setting", "map50_95", "map50", "map_small", "map_medium", "map_large", "ms_per_image"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
