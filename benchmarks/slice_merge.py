"""Sliced inference on dense crowds: what the slice merge costs, and when --slice and --augment pay.

    python benchmarks/slice_merge.py --out runs/bench/slice-merge [--weights W] [--crowd-weights W2]

1. Merge time. Dense 1920x1080 crowd frames from the synthetic generator (``--crowd``; the frames with 50
   or more labelled people): each frame's 640x640 windows (overlap 0.2) and full pass at --img, then the
   union merged by greedy NMM in tensor ops (``greedy_nmm``) and by the per-box loop it replaced
   (``greedy_nmm_loop``), same boxes checked; the merge's share of the sliced run's time, per frame.
2. Accuracy (COCO mAP, pycocotools). With --crowd-weights (a model trained on the synthetic set, e.g. make
   demo's best.pt): plain, --augment and --slice on the crowd frames at --crowd-img. With the shared
   yolov5n.pt on coco128 val at 640: plain, --augment and --slice 320x320.

Writes OUT/summary.json and prints the Markdown tables for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

import torch  # noqa: E402

from detect.backend import load_backend  # noqa: E402
from detect.data.config import load_data_config  # noqa: E402
from detect.data.dataset import load_image  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.data.synthetic import generate  # noqa: E402
from detect.evaluate import TimedBackend, coco_results, predictor_detections  # noqa: E402
from detect.infer.merge import greedy_nmm, greedy_nmm_loop  # noqa: E402
from detect.infer.predictor import InferenceConfig, Member, Predictor, whole_image_detections  # noqa: E402
from detect.infer.slicing import sliced_detections  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.metrics import coco_ground_truth, evaluate  # noqa: E402
from detect.outputs import write_json  # noqa: E402
from detect.paths import shared_dir  # noqa: E402

VAL = InferenceConfig(conf=0.001, iou=0.6, max_det=300, multi_label=True, interpolation="area")
MIN_PEOPLE = 50


def crowd_frames(out: Path, images: int) -> tuple[Path, list]:
    """The crowd set (generated once) and its samples with MIN_PEOPLE or more labelled people."""
    data = out / "data.yaml" if (out / "data.yaml").is_file() else generate(out, images, seed=7, val_fraction=0.5,
                                                                                crowd=True)
    cfg = load_data_config(data)
    samples = [s for split in ("train", "val") for s in scan_split(cfg, split, progress=False)[0]]
    return data, [s for s in samples if len(s.classes) >= MIN_PEOPLE]


def time_merge(backend, samples, img: int, slice_hw=(640, 640), repeats: int = 3) -> list[dict]:
    """Per frame: the sliced run's inference time, each merge's time (best of ``repeats``), boxes in and out."""
    rows = []
    for s in samples:
        image = load_image(s.path)
        t0 = time.perf_counter()
        union = torch.cat((whole_image_detections(backend, image, img, VAL)[0],
                           sliced_detections(backend, image, img, replace(VAL, slice_hw=slice_hw))))
        inference = time.perf_counter() - t0
        timed = {}
        for name, fn in (("tensor", greedy_nmm), ("loop", greedy_nmm_loop)):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                merged = fn(union, VAL.slice_match, VAL.agnostic, VAL.max_det, VAL.slice_grow)
                best = min(best, time.perf_counter() - t0)
            timed[name] = (best, merged)
        assert torch.equal(timed["tensor"][1], timed["loop"][1]), f"{s.path}: the merges differ"
        rows.append({"image": s.path.name, "people": len(s.classes), "boxes_in": len(union),
                     "boxes_out": len(timed["tensor"][1]), "inference_ms": 1e3 * inference,
                     "merge_ms": 1e3 * timed["tensor"][0], "loop_merge_ms": 1e3 * timed["loop"][0],
                     "merge_share": timed["tensor"][0] / (inference + timed["tensor"][0]),
                     "loop_merge_share": timed["loop"][0] / (inference + timed["loop"][0])})
        print(f"{s.path.name}: {len(s.classes)} people, {len(union)} boxes -> {rows[-1]['boxes_out']}; inference "
              f"{rows[-1]['inference_ms']:.0f} ms, merge {rows[-1]['merge_ms']:.1f} ms (loop "
              f"{rows[-1]['loop_merge_ms']:.0f} ms)")
    return rows


def accuracy(weights: Path, samples, names, img: int, configs: dict[str, InferenceConfig]) -> dict:
    """mAP50-95, mAP50, AP small and the all-in time per image of each inference configuration."""
    gt = coco_ground_truth(samples, names)
    out = {}
    for name, config in configs.items():
        backend = TimedBackend(load_backend(weights, torch.device("cpu")))
        dets, seconds = predictor_detections(Predictor([Member(backend, img)], config), samples, 16, 2, progress=False)
        m = evaluate(gt, coco_results(dets), names)
        out[name] = {"map50_95": m["map50_95"], "map50": m["map50"], "map_small": m.get("map_small"),
                     "ms_per_image": 1e3 * seconds["total"] / len(samples)}
        print(f"{name}: mAP50-95 {m['map50_95']:.4f} mAP50 {m['map50']:.4f}, {out[name]['ms_per_image']:.0f} ms/img")
    return out


def configs(slice_hw) -> dict[str, InferenceConfig]:
    return {"plain": VAL, "augment": replace(VAL, augment=True), f"slice {slice_hw[1]}x{slice_hw[0]}":
            replace(VAL, slice_hw=slice_hw)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/slice_merge.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the crowd set and summary.json")
    p.add_argument("--weights", type=Path, default=shared_dir() / "weights" / "yolov5n.pt",
                   help="the model whose boxes are merged in part 1 (and scored on coco128 in part 2)")
    p.add_argument("--crowd-weights", type=Path, default=None, help="a synthetic-set model, scored on the crowds")
    p.add_argument("--img", type=int, default=640, help="network size of each window and of the full pass")
    p.add_argument("--crowd-img", type=int, default=960, help="full-image size for the crowd accuracy runs")
    p.add_argument("--frames", type=int, default=60, help="crowd frames generated (those with 50+ people are used)")
    p.add_argument("--merge-only", action="store_true", help="part 1 alone: the merge's time, no accuracy runs")
    args = p.parse_args(argv)
    data, samples = crowd_frames(args.out / "crowd", args.frames)
    print(f"{len(samples)} crowd frames with {MIN_PEOPLE}+ people ({data})")
    backend = load_backend(args.weights, torch.device("cpu"))
    rows = time_merge(backend, samples, args.img)
    summary = {"machine": machine_info(), "weights": str(args.weights), "img": args.img, "frames": rows,
               "median_merge_share": statistics.median(r["merge_share"] for r in rows),
               "median_loop_merge_share": statistics.median(r["loop_merge_share"] for r in rows),
               "median_speedup": statistics.median(r["loop_merge_ms"] / r["merge_ms"] for r in rows)}
    if args.crowd_weights and not args.merge_only:
        names = load_data_config(data).names
        summary["crowd_accuracy"] = accuracy(args.crowd_weights, samples, names, args.crowd_img, configs((640, 640)))
    coco = shared_dir() / "datasets/coco128/data.yaml"
    if coco.is_file() and not args.merge_only:
        cfg = load_data_config(coco)
        val, _ = scan_split(cfg, "val", progress=False)
        summary["coco128_accuracy"] = accuracy(args.weights, val, cfg.names, 640, configs((320, 320)))
    write_json(summary, args.out / "summary.json")
    print(f"\nmerge share of the sliced run (median of {len(rows)} frames): {summary['median_merge_share']:.1%} "
          f"(loop: {summary['median_loop_merge_share']:.1%}); the tensor merge is {summary['median_speedup']:.0f}x "
          "faster")
    print(json.dumps({k: v for k, v in summary.items() if k.endswith("accuracy")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
