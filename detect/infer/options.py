"""The inference flags ``detect.val`` and ``detect.predict`` share, their checks, and the
``InferenceConfig`` they build."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

from detect import cli
from detect.infer.config import FUSE_CONF_TYPES, InferenceConfig
from detect.infer.runtimes import BACKENDS


def slice_size(text: str) -> tuple[int, int]:
    """``WxH`` (or one number for a square) -> (h, w)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", text)
    if not m or int(m.group(1)) < 32 or int(m.group(2) or m.group(1)) < 32:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WxH in pixels, each >= 32 (e.g. 640x640)")
    w = int(m.group(1))
    return int(m.group(2) or w), w


def add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="runtime for .onnx files: ONNX Runtime (auto) or OpenVINO (CPU; with --half: bf16 inference)")
    g = p.add_argument_group("test-time augmentation, slicing and ensembles")
    g.add_argument("--augment", action="store_true",
                   help="TTA: flips and scales (1, 0.83 flipped, 0.67) merged before NMS, as YOLOv5 --augment (~3x time)")
    g.add_argument("--slice", type=slice_size, default=None, metavar="WxH",
                   help="also run overlapping WxH windows of each image (in original pixels) at --img, batched, "
                   "for small objects in large images (e.g. 640x640)")
    g.add_argument("--slice-overlap", type=float, default=0.2, help="overlap of neighbouring windows, a fraction")
    g.add_argument("--no-full", action="store_true", help="with --slice: drop the full-image pass (slices only)")
    g.add_argument("--slice-merge", choices=["nmm", "nms"], default="nmm",
                   help="merge slice boxes by greedy non-maximum merging on intersection-over-smaller, or NMS")
    g.add_argument("--slice-match", type=float, default=0.5, help="threshold of --slice-merge (IoS for nmm, IoU for nms)")
    g.add_argument("--fuse", choices=["wbf", "nms"], default="wbf",
                   help="how several --weights and/or --img sizes are fused per image: Weighted Boxes Fusion or NMS")
    g.add_argument("--fuse-weights", type=float, nargs="+", default=None, metavar="W",
                   help="one weight per --weights file for WBF; equal when omitted")
    g.add_argument("--fuse-iou", type=float, default=0.55, help="IoU at which --fuse clusters boxes")
    g.add_argument("--fuse-skip", type=float, default=0.0, help="WBF ignores member boxes scoring below this")
    g.add_argument("--fuse-conf", choices=FUSE_CONF_TYPES, default="max",
                   help="WBF's fused score: max of the cluster, or ensemble-boxes' avg (penalises boxes that only some "
                   "members find; measured worse for mAP on coco128, docs/BENCHMARKS.md) and its variants")


def check_inference_args(args) -> None:
    cli.check_img(*args.img)
    cli.check_range("--slice-overlap", args.slice_overlap, 0, 0.9)
    cli.check_range("--slice-match", args.slice_match, 0, 1, low_open=True)
    cli.check_range("--fuse-iou", args.fuse_iou, 0, 1, low_open=True)
    cli.check_range("--fuse-skip", args.fuse_skip, 0, 1)
    if args.no_full and args.slice is None:
        raise cli.UsageError("--no-full only applies with --slice WxH")
    if args.fuse_weights is not None:
        if len(args.fuse_weights) != len(args.weights):
            raise cli.UsageError(
                f"--fuse-weights has {len(args.fuse_weights)} values for {len(args.weights)} --weights files: give one each"
            )
        if min(args.fuse_weights) <= 0:
            raise cli.UsageError("--fuse-weights: every weight must be > 0")
    if len(set(map(str, args.weights))) != len(args.weights):
        raise cli.UsageError("--weights: a file is listed twice")


def inference_config(args, **overrides) -> InferenceConfig:
    cfg = InferenceConfig(
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        classes=tuple(args.classes) if getattr(args, "classes", None) else None,
        agnostic=getattr(args, "agnostic_nms", False),
        augment=args.augment,
        slice_hw=args.slice,
        slice_overlap=args.slice_overlap,
        full=not args.no_full,
        slice_merge=args.slice_merge,
        slice_match=args.slice_match,
        fuse=args.fuse,
        fuse_iou=args.fuse_iou,
        fuse_skip=args.fuse_skip,
        fuse_conf=args.fuse_conf,
    )
    return replace(cfg, **overrides)


def describe(cfg: InferenceConfig, members: int) -> str:
    """One line naming what runs beyond a plain pass, for the logs and the speed line."""
    parts = []
    if cfg.augment:
        parts.append("TTA (3 passes)")
    if cfg.slice_hw is not None:
        h, w = cfg.slice_hw
        parts.append(f"slices {w}x{h} overlap {cfg.slice_overlap:g}{'' if cfg.full else ' (no full pass)'} merged by {cfg.slice_merge}")
    if members > 1:
        parts.append(f"{members} members fused by {cfg.fuse}" + (f" (scores: {cfg.fuse_conf})" if cfg.fuse == "wbf" else ""))
    return ", ".join(parts) or "plain"
