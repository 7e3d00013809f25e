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
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from detect import cli
from detect.backend import check_input_size, load_backend, runtime_info, settle_cpu_threads
from detect.boxes import non_max_suppression
from detect.data.config import load_data_config
from detect.data.dataset import EvalDataset, load_image
from detect.data.labels import Sample, scan_split
from detect.infer.classmap import for_data
from detect.infer.merge import fuse
from detect.infer.options import add_inference_args, check_inference_args, describe, inference_config
from detect.infer.predictor import Member, Predictor
from detect.metrics import coco_ground_truth, evaluate, format_table
from detect.outputs import atomic_write_text, ensure_writable, write_json


class TimedBackend:
    """A backend that adds the seconds spent inside it (CUDA synchronised) to ``seconds``."""

    def __init__(self, backend):
        self.backend, self.seconds = backend, 0.0
        self.names, self.stride, self.fixed_shape = backend.names, backend.stride, backend.fixed_shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        y = self.backend(x)
        if y.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return y


# Rectangular batches pad every image to its batch's shape, so the batch size moves mAP (a coco128 fine-tune
# at 320: 0.2268 at 16 against 0.2416 at 32): the trainer and python -m prune validate at this size, so their
# logs and ``python -m detect.val`` report the same figure for the same weights.
DEFAULT_BATCH = 16


def batched_detections(
    infer: Callable[[torch.Tensor], torch.Tensor],
    samples: list[Sample],
    img_size: int = 640,
    batch_size: int = 16,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
    stride: int = 32,
    workers: int = 2,
    progress: bool = True,
    fixed_shape: tuple[int, int] | None = None,
) -> tuple[dict[int, torch.Tensor], dict]:
    """Run ``infer`` (float batch in [0, 1] -> decoded (b, N, 5 + nc)) over ``samples`` in rectangular
    batches, multi-label NMS. Returns {sample index: (n, 6) in original pixels} and seconds spent
    in pre-processing, inference and NMS."""
    dataset = EvalDataset(samples, img_size, batch_size, stride, rect=fixed_shape is None)
    if fixed_shape is not None:
        dataset.shapes[:] = fixed_shape
    out: dict[int, torch.Tensor] = {}
    seconds = {"pre": 0.0, "inference": 0.0, "nms": 0.0}
    bar = tqdm(dataset.loader(workers), desc="val", unit="batch", disable=None if progress else True, leave=False)
    for images, letterboxes, indices in bar:
        t0 = time.perf_counter()
        x = images.float().div_(255)
        t1 = time.perf_counter()
        pred = infer(x)
        if pred.is_cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        for det, lb, index in zip(non_max_suppression(pred, conf, iou, multi_label=True, max_det=max_det), letterboxes, indices):
            det = det.cpu()
            det[:, :4] = lb.to_original(det[:, :4])
            out[index] = det
        t3 = time.perf_counter()
        for k, dt in zip(seconds, (t1 - t0, t2 - t1, t3 - t2)):
            seconds[k] += dt
    return out, seconds


def coco_results(dets: dict[int, torch.Tensor]) -> list[dict]:
    """{image id: (n, 6) xyxy} -> COCO results (bbox xywh)."""
    results = []
    for index in sorted(dets):
        for x1, y1, x2, y2, score, cls in dets[index].tolist():
            results.append({"image_id": index, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def run_eval(
    infer: Callable[[torch.Tensor], torch.Tensor],
    samples: list[Sample],
    names: list[str],
    img_size: int = 640,
    batch_size: int = 16,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
    stride: int = 32,
    coco_max_det: int = 100,
    workers: int = 2,
    progress: bool = True,
    fixed_shape: tuple[int, int] | None = None,
) -> tuple[dict, list[dict]]:
    """One plain model over ``samples`` (what training's validation runs). ``max_det`` bounds NMS;
    ``coco_max_det`` is COCOeval's last maxDets (100: COCO's standard and official val.py's).
    Returns the metrics dict (``detect.metrics.evaluate`` plus ``speed_ms``) and the COCO
    detections in original-image pixels."""
    t_start = time.perf_counter()
    dets, seconds = batched_detections(infer, samples, img_size, batch_size, conf, iou, max_det, stride, workers,
                                       progress, fixed_shape)
    wall = time.perf_counter() - t_start
    detections = coco_results(dets)
    result = evaluate(coco_ground_truth(samples, names), detections, names, max_det=coco_max_det)
    n = max(len(samples), 1)
    result["speed_ms"] = {k: 1e3 * v / n for k, v in seconds.items()} | {"total": 1e3 * wall / n}
    result["images"] = len(samples)
    result["wall_s"] = wall
    return result, detections


def fixed_shape_map(backend, samples: list[Sample], names: list[str], shape: tuple[int, int], batch: int = 8) -> dict:
    """mAP50-95 and mAP50 of one backend with every image letterboxed to ``shape``, as a deployed,
    fixed-shape graph runs (the benches and the INT8 export's check)."""
    m, _ = run_eval(backend, samples, names, max(shape), batch, stride=backend.stride, fixed_shape=tuple(shape),
                    progress=False, workers=2)
    return {"map50_95": m["map50_95"], "map50": m["map50"]}


def predictor_detections(predictor: Predictor, samples: list[Sample], batch_size: int = 16, workers: int = 2,
                         progress: bool = True) -> tuple[dict[int, torch.Tensor], dict]:
    """Each member over the dataset (rectangular batches, or image by image when slicing), then
    fused per image. Inference seconds are those spent inside the members' ``TimedBackend``s."""
    c = predictor.config
    per_member, pre = [], 0.0
    t_start = time.perf_counter()
    for m in predictor.members:
        if c.slice_hw is None:
            dets, seconds = batched_detections(m.backend, samples, m.img_size, batch_size, c.conf, c.iou, c.max_det,
                                               m.backend.stride, workers, progress, m.backend.fixed_shape)
            pre += seconds["pre"]
        else:
            dets = {}
            for i, s in enumerate(tqdm(samples, desc="val (sliced)", unit="img", disable=None if progress else True, leave=False)):
                t0 = time.perf_counter()
                img = load_image(s.path)
                pre += time.perf_counter() - t0
                dets[i] = predictor.member_detections(m, img)
        per_member.append(dets)
    weights = [m.weight for m in predictor.members]
    fused = {
        i: fuse([d[i] for d in per_member], (s.height, s.width), c.fuse, weights, c.fuse_iou, c.fuse_skip, c.fuse_conf,
                c.max_det)
        for i, s in enumerate(samples)
    }
    wall = time.perf_counter() - t_start
    timed = {id(t): t for t in (_timed(m.backend) for m in predictor.members)}  # members may share a backend
    inference = sum(t.seconds for t in timed.values())
    return fused, {"pre": pre, "inference": inference, "nms": max(0.0, wall - pre - inference), "total": wall}


def _timed(backend) -> TimedBackend:
    while not isinstance(backend, TimedBackend):
        backend = backend.backend  # through AugmentedBackend
    return backend


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
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
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
    settle_cpu_threads([m.backend for m in predictor.members])  # ONNX Runtime / OpenVINO alone: the cores are theirs
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
        from detect.report import write_report

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
