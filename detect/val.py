"""Evaluate a detector: COCO mAP by pycocotools on rectangular batches, as official YOLOv5.

    python -m detect.val --weights W --data D [--split val] --img 640 --batch 16 \\
        --conf 0.001 --iou 0.6 [--device cpu|cuda:0] [--half] --json OUT
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
from detect.boxes import non_max_suppression
from detect.data.config import load_data_config
from detect.data.dataset import EvalDataset
from detect.data.labels import Sample, scan_split
from detect.metrics import coco_ground_truth, evaluate, format_table
from detect.outputs import atomic_write_text, ensure_writable, write_json


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
    """Run ``infer`` (float batch in [0, 1] -> decoded (b, N, 5 + nc)) over ``samples``.

    ``max_det`` bounds NMS; ``coco_max_det`` is COCOeval's last maxDets (100: COCO's standard and
    official val.py's). Returns the metrics dict (see ``detect.metrics.evaluate`` plus ``speed_ms``) and the COCO
    detections in original-image pixels.
    """
    dataset = EvalDataset(samples, img_size, batch_size, stride, rect=fixed_shape is None)
    if fixed_shape is not None:
        dataset.shapes[:] = fixed_shape
    detections: list[dict] = []
    t_pre = t_inf = t_nms = 0.0
    t_start = time.perf_counter()
    bar = tqdm(dataset.loader(workers), desc="val", unit="batch", disable=None if progress else True, leave=False)
    for images, letterboxes, indices in bar:
        t0 = time.perf_counter()
        x = images.float().div_(255)
        t1 = time.perf_counter()
        pred = infer(x)
        if pred.is_cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        outs = non_max_suppression(pred, conf, iou, multi_label=True, max_det=max_det)
        for det, lb, index in zip(outs, letterboxes, indices):
            if not len(det):
                continue
            det = det.cpu()
            xyxy = lb.to_original(det[:, :4])
            xywh = torch.cat((xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]), 1)
            for box, score, cls in zip(xywh.tolist(), det[:, 4].tolist(), det[:, 5].tolist()):
                detections.append({"image_id": index, "category_id": int(cls), "bbox": box, "score": score})
        t3 = time.perf_counter()
        t_pre, t_inf, t_nms = t_pre + t1 - t0, t_inf + t2 - t1, t_nms + t3 - t2
    wall = time.perf_counter() - t_start
    n = max(len(samples), 1)
    result = evaluate(coco_ground_truth(samples, names), detections, names, max_det=coco_max_det)
    result["speed_ms"] = {"pre": 1e3 * t_pre / n, "inference": 1e3 * t_inf / n, "nms": 1e3 * t_nms / n}
    result["images"] = len(samples)
    result["wall_s"] = wall
    return result, detections


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m detect.val",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--weights", required=True, help="our .pt checkpoint or an official YOLOv5 .pt")
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--img", type=int, default=640, help="long side of the network input, pixels")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=300, help="detections kept per image by NMS")
    p.add_argument(
        "--coco-max-det", type=int, default=100, help="detections per image COCOeval scores (COCO's standard: 100)"
    )
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="data-loading processes")
    p.add_argument("--json", type=Path, default=None, help="write the metrics here")
    p.add_argument("--save-detections", type=Path, default=None, help="write COCO-format detections here")
    p.add_argument("--all-classes", action="store_true", help="print classes without instances too")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.check_img(args.img)
    cli.check_range("--batch", args.batch, 1)
    cli.check_range("--conf", args.conf, 0, 1)
    cli.check_range("--iou", args.iou, 0, 1, low_open=True)
    cli.check_range("--max-det", args.max_det, 1)
    cli.check_range("--coco-max-det", args.coco_max_det, 1)
    cli.check_range("--workers", args.workers, 0)
    for out in (args.json, args.save_detections):  # an unwritable output fails before the work, not after
        if out is not None:
            ensure_writable(out.parent)
    cfg = load_data_config(args.data)  # bad data fails before the model loads
    device = cli.select_device(args.device)
    from detect.backend import check_input_size, load_backend

    backend = load_backend(args.weights, device, args.half)
    check_input_size(backend, args.img, args.weights)
    if len(backend.names) != cfg.nc:
        raise cli.UsageError(f"{args.weights} predicts {len(backend.names)} classes but {args.data} has {cfg.nc}")
    samples, report = scan_split(cfg, args.split)
    for line in report.lines():
        print(line)
    if not samples:
        raise cli.UsageError(f"{args.data}: the '{args.split}' split has no usable images")
    result, dets = run_eval(
        backend,
        samples,
        cfg.names,
        args.img,
        args.batch,
        args.conf,
        args.iou,
        args.max_det,
        stride=backend.stride,
        coco_max_det=args.coco_max_det,
        workers=args.workers,
        fixed_shape=backend.fixed_shape,
    )
    print(format_table(result, len(samples), args.all_classes))
    s = result["speed_ms"]
    print(
        f"Speed: {s['pre']:.1f} ms pre, {s['inference']:.1f} ms inference, {s['nms']:.1f} ms NMS per image "
        f"at batch {args.batch}, img {args.img}; {result['wall_s']:.1f} s in all"
    )
    result.update(
        weights=str(args.weights),
        data=str(args.data),
        split=args.split,
        img=args.img,
        conf=args.conf,
        iou=args.iou,
        label_issues=report.counts(),
    )
    if args.json:
        write_json(result, args.json)
    if args.save_detections:
        atomic_write_text(json.dumps(dets), args.save_detections)
    return 0


if __name__ == "__main__":
    cli.run(main)
