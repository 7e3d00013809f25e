"""The whole pipeline on a new dataset, as a team would run it, each stage through its library API.

    python benchmarks/rehearsal.py --data ../shared/datasets/ccp/data.yaml --out runs/rehearsal

analysis (recommended.yaml) -> training yolov5n from the shared COCO weights with that recipe -> the
validation report -> slimming to 0.6x GFLOPs with ``make prune GFLOPS=0.6``'s recipe -> ONNX FP32 and
INT8 export -> ``deploy.bench`` rows with their mAP -> a submission file for the val images.

Writes DIR/summary.md (one table: stage, what it produced, its key figure, its wall time) and
DIR/summary.json (``img``, ``stages``, ``trained_weights``, ``trained_map50_95``, ``pruned_weights``,
``pruned_map50_95``, ``pruned_gflops_ratio``, ``submission``; paths relative to DIR, plus the machine and
the date). Resumable: a finished stage leaves DIR/stages/NAME.json and is not run again; delete it to redo
that stage (and the ones after it, which read its output).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from analysis.__main__ import analyse  # noqa: E402
from deploy.bench import BenchConfig, bench, format_table, plot_rows  # noqa: E402
from deploy.export import export  # noqa: E402
from deploy.quantize import export_int8  # noqa: E402
from detect import cli  # noqa: E402
from detect.backend import TorchBackend, load_backend  # noqa: E402
from detect.data.config import load_data_config  # noqa: E402
from detect.data.dataset import load_image  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.evaluate import DEFAULT_BATCH, EvalConfig, run_eval  # noqa: E402
from detect.geometry import rect_shape  # noqa: E402
from detect.hyp import TRAIN_SECTION, load_hyp, train_options  # noqa: E402
from detect.infer.predictor import InferenceConfig, Member, Predictor  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.metrics import coco_ground_truth  # noqa: E402
from detect.outputs import write_json  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.report import write_report  # noqa: E402
from detect.submission import write_submission  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402
from prune.config import PruneConfig  # noqa: E402
from prune.pipeline import Stopped  # noqa: E402
from prune.pipeline import run as run_prune  # noqa: E402

HYP = REPO / "configs" / "hyp"


@dataclass(frozen=True)
class Rehearsal:
    data: Path
    out: Path
    weights: Path
    img: int = 320  # training and validation size (make train's TRAIN_IMG)
    epochs: int = 10  # make train's EPOCHS
    batch: int = 16
    gflops: float = 0.6  # make prune GFLOPS=0.6
    prune_epochs: int = 15
    bench_iters: int = 50


@dataclass
class Stage:
    stage: str
    output: str  # relative to the rehearsal's folder
    figure: str
    seconds: float = 0.0
    state: dict | None = None  # what later stages read (paths relative to the folder)


@functools.cache  # three stages ask; the val split is scanned once
def deploy_shape(r: Rehearsal) -> tuple[int, int]:
    """The letterboxed shape of the data's median image at --img (550x830 portraits: 320x224 at 320)."""
    cfg = load_data_config(r.data)
    samples, _ = scan_split(cfg, "val", progress=False)
    h = int(np.median([s.height for s in samples]))
    w = int(np.median([s.width for s in samples]))
    return rect_shape(h, w, r.img)


# --------------------------------------------------------------------------- stages
def analysis_stage(r: Rehearsal, state: dict) -> Stage:
    summary = analyse(r.data, r.out / "analysis", img=r.img, progress=False)
    advice = [x["setting"] for x in summary["recommendations"] if x["value"] not in (None, False, "default")]
    recipe = yaml.safe_load((r.out / "analysis" / "recommended.yaml").read_text()) or {}
    hyp_lines = [f"{k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in recipe.items() if k != TRAIN_SECTION]
    return Stage("analysis", "analysis/recommended.yaml",
                 f"head class {summary['classes']['head_share']:.0%} of boxes, imbalance "
                 f"{summary['classes']['imbalance_ratio']:.0f}:1; advice: {', '.join(advice)}; recipe: "
                 f"{'; '.join(hyp_lines) or 'defaults'}", state={"recipe": "analysis/recommended.yaml"})


def training_stage(r: Rehearsal, state: dict) -> Stage:
    recipe = r.out / state["recipe"]
    options = train_options(recipe)
    config = TrainConfig(data=str(r.data), out=r.out / "train", model="yolov5n", weights=str(r.weights),
                         anchors=options.get("anchors"), img=r.img, val_img=options.get("val_img"), epochs=r.epochs,
                         batch=r.batch, hyp=load_hyp(recipe), device="cpu", workers=2, quiet=True)
    result = fit(config)
    if result.stopped:
        raise Stopped(result.stopped)
    best = result.best.relative_to(r.out)
    return Stage("training", str(best), f"mAP50-95 {result.summary['map50_95']:.4f} at the last epoch "
                 f"({r.epochs} epochs at {r.img}, the recipe of {state['recipe']})",
                 state={"trained": str(best)})


def validation_stage(r: Rehearsal, state: dict) -> Stage:
    cfg = load_data_config(r.data)
    samples, _ = scan_split(cfg, "val", progress=False)
    backend = TorchBackend(r.out / state["trained"], cli.select_device("cpu"))
    metrics, detections = run_eval(backend, samples, cfg.names,
                                   EvalConfig(r.img, DEFAULT_BATCH, stride=backend.stride, progress=False))
    gt = coco_ground_truth(samples, cfg.names)
    write_report(r.out / "val", samples, cfg.names, gt, detections, metrics, root=cfg.root)
    write_json(metrics, r.out / "val" / "metrics.json")
    worst = min((c for c in metrics["per_class"] if c.get("instances")), key=lambda c: c["map50_95"])
    return Stage("validation", "val/report.html",
                 f"mAP50-95 {metrics['map50_95']:.4f}, mAP50 {metrics['map50']:.4f}; weakest class "
                 f"{worst['class']} ({worst['map50_95']:.3f})",
                 state={"trained_map50_95": metrics["map50_95"]})


def slimming_stage(r: Rehearsal, state: dict) -> Stage:
    """``make prune GFLOPS=0.6``: taylor, one step, widths rounded to 16, distilled recovery with rewind.yaml."""
    config = PruneConfig(weights=r.out / state["trained"], data=str(r.data), out=r.out / "prune", gflops=r.gflops,
                         gflops_at_most=True, strategy="taylor", steps=1, finetune_epochs=r.prune_epochs, distill=True,
                         round_to=16, img=r.img, batch=r.batch, hyp=str(HYP / "recover.yaml"),
                         finetune_hyp=str(HYP / "rewind.yaml"), report_shape=deploy_shape(r), latency_iters=50)
    report = run_prune(config)
    ratio = report["gflops_after"] / report["gflops_before"]
    lat = report.get("onnx_latency_ms_single_thread") or {}
    return Stage("slimming", "prune/pruned.pt",
                 f"mAP50-95 {report['map50_95_before']:.4f} -> {report['map50_95_pruned']:.4f} right after the "
                 f"surgery -> {report['map50_95_final']:.4f} kept, at {ratio:.2f}x GFLOPs"
                 + (f", {lat['after'] / lat['before']:.2f}x ONNX Runtime latency on one thread" if lat else ""),
                 state={"pruned": "prune/pruned.pt", "pruned_map50_95": report["map50_95_final"],
                        "pruned_gflops_ratio": ratio, "kept": report["kept"]})


def export_stage(r: Rehearsal, state: dict) -> Stage:
    done = export(r.out / state["pruned"], r.out / "deploy", deploy_shape(r))
    fp32, meta = done.fp32, done.meta
    q = export_int8(fp32, r.data, meta)
    m = q["map"]
    return Stage("export", "deploy/model.onnx, deploy/model_int8.onnx",
                 f"mAP50-95 at {meta['input_shape'][2]}x{meta['input_shape'][3]} in ONNX Runtime: FP32 "
                 f"{m['fp32']['map50_95']:.4f}, INT8 {m['int8']['map50_95']:.4f}",
                 state={"onnx": "deploy/model.onnx"})


def bench_stage(r: Rehearsal, state: dict) -> Stage:
    result = bench(BenchConfig(weights=[str(r.out / state["trained"]), str(r.out / state["pruned"])],
                               img=deploy_shape(r), iters=r.bench_iters, warmup=5, data=str(r.data),
                               calib_data=str(r.data)))
    write_json(result, r.out / "bench" / "bench.json")
    plot_rows(result["rows"], r.out / "bench" / "bench.png")
    (r.out / "bench" / "table.txt").write_text(format_table(result["rows"]) + "\n")
    rows = [row for row in result["rows"] if row["runtime"] == "onnxruntime" and row["precision"] != "fp16"]
    figure = "; ".join(f"{Path(row['weights']).stem} ONNX Runtime {row['precision'].upper()} "
                       f"{row['model']['p50_ms']:.1f} ms, mAP50-95 {row['accuracy']['map50_95']:.4f}" for row in rows)
    return Stage("bench", "bench/bench.json", figure)


def submission_stage(r: Rehearsal, state: dict) -> Stage:
    """The deployed FP32 graph of the pruned model on the val images, as ``detect.predict --submission``."""
    cfg = load_data_config(r.data)
    images = cfg.split("val").images
    backend = load_backend(r.out / state["onnx"], cli.select_device("cpu"))
    predictor = Predictor([Member(backend, r.img)], InferenceConfig(conf=0.001, iou=0.6, max_det=300))
    root = images[0].parent
    records = []
    for path in images:
        for x1, y1, x2, y2, score, cls in predictor(load_image(path)).tolist():
            records.append({"file_name": path.relative_to(root).as_posix(), "category_id": int(cls),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    write_submission(r.out / "submission.csv", records, cfg.names)
    return Stage("submission", "submission.csv", f"{len(records)} boxes for {len(images)} val images "
                 "(the pruned model's ONNX FP32 graph)", state={"submission": "submission.csv"})


STAGES = (analysis_stage, training_stage, validation_stage, slimming_stage, export_stage, bench_stage,
          submission_stage)


# --------------------------------------------------------------------------- driver
def rehearse(r: Rehearsal) -> dict:
    """Every stage in order, skipping those finished by an earlier run; returns summary.json's content."""
    state, stages = {}, []
    for fn in STAGES:
        name = fn.__name__.removesuffix("_stage")
        done = r.out / "stages" / f"{name}.json"
        if done.is_file():
            stage = Stage(**json.loads(done.read_text()))
            print(f"{name}: done in an earlier run ({stage.figure})")
        else:
            print(f"{name}: running")
            t0 = time.perf_counter()
            stage = fn(r, state)
            stage.seconds = round(time.perf_counter() - t0, 1)
            write_json(stage.__dict__, done)
            print(f"{name}: {stage.figure} ({stage.seconds:.0f} s)")
        state.update(stage.state or {})
        stages.append(stage)
    summary = {
        "data": str(r.data), "img": r.img, "epochs": r.epochs, "prune_epochs": r.prune_epochs,
        "stages": [{k: s.__dict__[k] for k in ("stage", "output", "figure", "seconds")} for s in stages],
        "seconds_total": round(sum(s.seconds for s in stages), 1),
        "trained_weights": state["trained"], "trained_map50_95": state["trained_map50_95"],
        "pruned_weights": state["pruned"], "pruned_map50_95": state["pruned_map50_95"],
        "pruned_gflops_ratio": state["pruned_gflops_ratio"], "pruned_kept": state["kept"],
        "submission": state["submission"],
        "machine": machine_info(), "date": datetime.date.today().isoformat(),
    }
    write_json(summary, r.out / "summary.json")
    (r.out / "summary.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    rows = [f"| {s['stage']} | `{s['output']}` | {s['figure']} | {s['seconds'] / 60:.1f} min |" for s in summary["stages"]]
    cpu = summary["machine"].get("cpu", "unknown CPU")
    return "\n".join([
        f"# Rehearsal on {summary['data']} (img {summary['img']}, {summary['date']}, {cpu})", "",
        "| stage | output | key figure | wall time |", "| --- | --- | --- | --- |", *rows, "",
        f"In all {summary['seconds_total'] / 60:.1f} minutes. {summary['pruned_kept']}.", ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/rehearsal.py", description=__doc__.split("\n\n")[0],
                                formatter_class=cli.HelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="data.yaml with train and val splits")
    p.add_argument("--out", type=Path, required=True, help="the rehearsal's folder (re-running resumes it)")
    p.add_argument("--weights", type=Path, default=shared_dir() / "weights" / "yolov5n.pt",
                   help="starting weights (the shared COCO yolov5n)")
    p.add_argument("--img", type=int, default=320, help="training and validation size")
    p.add_argument("--epochs", type=int, default=10, help="training epochs")
    p.add_argument("--prune-epochs", type=int, default=15, help="distilled recovery epochs after the 0.6x prune")
    p.add_argument("--gflops", type=float, default=0.6, help="the slimmed model's share of the GFLOPs")
    p.add_argument("--batch", type=int, default=16, help="training batch")
    p.add_argument("--bench-iters", type=int, default=50, help="timed runs per bench row")
    args = p.parse_args(argv)
    cli.check_img(args.img)
    for flag in ("epochs", "prune_epochs", "batch", "bench_iters"):
        cli.check_range(f"--{flag.replace('_', '-')}", getattr(args, flag), 1)
    if not args.weights.is_file():
        raise cli.UsageError(f"--weights {args.weights}: no such file (the shared folder holds yolov5n.pt)")
    r = Rehearsal(args.data, args.out, args.weights, args.img, args.epochs, args.batch, gflops=args.gflops,
                  prune_epochs=args.prune_epochs, bench_iters=args.bench_iters)
    summary = rehearse(r)
    print((r.out / "summary.md").read_text())
    print(f"summary: {r.out / 'summary.json'} ({summary['seconds_total'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    cli.run(main)
