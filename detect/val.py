"""Evaluate a detector: COCO mAP on rectangular batches, as official YOLOv5 val.py, optionally
with TTA, sliced inference, an ensemble of models and image sizes, and an error-analysis report.

    python -m detect.val --weights W [W2 ...] --data D [--split val] --img 640 [800] --batch 16 \\
        --conf 0.001 --iou 0.6 [--device cpu|cuda:0] [--half] --json OUT \\
        [--augment] [--slice WxH] [--fuse wbf|nms] [--report DIR [--meta meta.csv]]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from detect import cli
from detect.backend import check_input_size, load_backend, runtime_info
from detect.data.config import load_data_config
from detect.data.labels import scan_split
from detect.evaluate import DEFAULT_BATCH, TimedBackend, coco_results, predictor_detections
from detect.infer.classmap import for_data
from detect.infer.options import add_inference_args, check_inference_args, describe, inference_config
from detect.infer.predictor import Member, Predictor
from detect.infer.threads import settled_cpu_threads
from detect.metrics import coco_ground_truth, evaluate, format_table
from detect.outputs import atomic_write_text, ensure_writable, write_json
from detect.report import write_report


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m detect.val",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--weights", required=True, nargs="+",
                   help="our .pt checkpoint, an official YOLOv5 .pt, .onnx or .engine; several are fused (--fuse)")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--split", default="val", choices=["train", "val", "test"], help="the data.yaml split scored")
    p.add_argument("--img", type=int, nargs="+", default=[640],
                   help="long side of the network input, pixels; several sizes are fused (--fuse)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH,
                   help="images per batch; rectangular batches pad each batch to its own shape, so mAP moves a "
                   "little with this (the trainer validates at the same default)")
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image by NMS")
    p.add_argument(
        "--coco-max-det", type=int, default=100, help="detections per image COCOeval scores (COCO's standard: 100)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--half", action="store_true", help="FP16 inference on CUDA; bf16 with --backend openvino")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data-loading processes")
    p.add_argument("--json", type=Path, default=None, help="write the metrics here (incl. map_small/medium/large)")
    p.add_argument("--save-detections", type=Path, default=None, help="write COCO-format detections here")
    p.add_argument("--all-classes", action="store_true", help="print classes without instances too")
    p.add_argument("--report", type=Path, default=None, metavar="DIR",
                   help="error analysis: DIR/report.html, report.json and PNGs (confusion, PR/F1, AP by size and "
                   "scene, worst images)")
    p.add_argument("--meta", type=Path, default=None,
                   help="per-image attributes CSV (image, scene, ...) for AP per attribute in --report "
                   "(default: meta.csv beside data.yaml when present)")
    p.add_argument("--no-class-map", action="store_true",
                   help="refuse a model whose classes differ from the data's instead of matching them by name "
                   "(e.g. the COCO model's person class on a person-only set)")
    add_inference_args(p)
    return p.parse_args(argv)


EPILOG = """examples:
  python -m detect.val --weights best.pt --data data.yaml --json metrics.json --report runs/val/report
  python -m detect.val --weights best.pt --data data.yaml --augment
  python -m detect.val --weights a.pt b.onnx --img 640 800 --fuse wbf --data data.yaml
  python -m detect.val --weights best.pt --data data.yaml --slice 640x640 --slice-overlap 0.2"""


def check_args(args) -> None:
    check_inference_args(args)
    cli.check_range("--batch", args.batch, 1)
    cli.check_range("--conf", args.conf, 0, 1)
    cli.check_range("--iou", args.iou, 0, 1, low_open=True)
    cli.check_range("--max-det", args.max_det, 1)
    cli.check_range("--coco-max-det", args.coco_max_det, 1)
    cli.check_range("--workers", args.workers, 0)
    if args.meta is not None and args.report is None:
        raise cli.UsageError("--meta is used by --report DIR: add --report")
    for out in (args.json, args.save_detections, args.report and args.report / "report.json"):
        if out is not None:  # an unwritable output fails before the work, not after
            ensure_writable(out.parent)


def build_predictor(args, device, names: list[str], data: str) -> Predictor:
    """Every (weights, size) member, timed, its classes matched to the data's (by name where they differ),
    checked against fixed graph sizes."""
    weights = args.fuse_weights or [1.0] * len(args.weights)
    members = []
    for w, mw in zip(args.weights, weights):
        backend = for_data(TimedBackend(load_backend(w, device, args.half, args.backend)), names,
                           not args.no_class_map, str(w), data)
        for size in args.img:
            check_input_size(backend, size, w)
            members.append(Member(backend, size, mw))
    return Predictor(members, inference_config(args, multi_label=True, interpolation="area"))


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    cfg = load_data_config(args.data)  # bad data fails before the model loads
    device = cli.select_device(args.device)
    predictor = build_predictor(args, device, cfg.names, args.data)
    with settled_cpu_threads([m.backend for m in predictor.members]):  # ONNX Runtime / OpenVINO alone: the cores
        return validate(args, cfg, predictor)


def validate(args, cfg, predictor: Predictor) -> int:
    """Score ``predictor`` on the split and write what the flags ask for: the command after its checks."""
    samples, label_report = scan_split(cfg, args.split)
    for line in label_report.lines():
        print(line)
    if not samples:
        raise cli.UsageError(f"{args.data}: the '{args.split}' split has no usable images")
    print(f"inference: {describe(predictor.config, len(predictor.members))}")
    dets, seconds = predictor_detections(predictor, samples, args.batch, args.workers)
    detections = coco_results(dets)
    gt = coco_ground_truth(samples, cfg.names)
    result = evaluate(gt, detections, cfg.names, max_det=args.coco_max_det)
    n = len(samples)
    result.update(speed_ms={k: 1e3 * v / n for k, v in seconds.items()}, images=n, wall_s=seconds["total"])
    print(format_table(result, n, args.all_classes))
    print(speed_line(result, args))
    result.update(
        weights=[str(w) for w in args.weights] if len(args.weights) > 1 else str(args.weights[0]),
        backend=[runtime_info(m.backend) for m in predictor.members[:: len(args.img)]],
        data=str(args.data),
        split=args.split,
        img=args.img if len(args.img) > 1 else args.img[0],
        conf=args.conf,
        iou=args.iou,
        inference=describe(predictor.config, len(predictor.members)),
        label_issues=label_report.counts(),
    )
    if args.report:
        t0 = time.perf_counter()
        meta = args.meta or (cfg.root / "meta.csv" if (cfg.root / "meta.csv").is_file() else None)
        write_report(args.report, samples, cfg.names, gt, detections, result, meta=meta, root=cfg.root)
        print(f"report: {args.report / 'report.html'} ({time.perf_counter() - t0:.1f} s)")
    if args.json:
        write_json(result, args.json)
    if args.save_detections:
        atomic_write_text(json.dumps(detections), args.save_detections)
    return 0


def speed_line(result: dict, args) -> str:
    s = result["speed_ms"]
    return (
        f"Speed: {s['pre']:.1f} ms pre, {s['inference']:.1f} ms inference, {s['nms']:.1f} ms NMS/merge per image, "
        f"{s['total']:.1f} ms all-in, at batch {args.batch}, img {' '.join(map(str, args.img))}; "
        f"{result['wall_s']:.1f} s in all"
    )


if __name__ == "__main__":
    cli.run(main)
