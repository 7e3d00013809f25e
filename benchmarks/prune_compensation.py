"""What folding removed channels' means into their consumers buys, right after surgery.

    python benchmarks/prune_compensation.py [--weights W] [--ratios 0.02 0.05 0.1 0.3 0.5]

For each ratio: prune W (global BN-gamma threshold, min-keep 0.1, round-to 8) with and without
the fold (32 calibration images from the train split) and validate on coco128 val at --img,
no fine-tuning. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.weights import build_from_checkpoint, load_checkpoint  # noqa: E402
from prune.pipeline import calibration_batch, evaluate  # noqa: E402
from prune.surgery import prune  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", default=str(shared_dir() / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared_dir() / "datasets/coco128/data.yaml"))
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--ratios", type=float, nargs="+", default=[0.02, 0.05, 0.1, 0.3, 0.5])
    args = p.parse_args()
    cfg = load_data_config(args.data)
    samples, _ = scan_split(cfg, "val", progress=False)
    model = build_from_checkpoint(load_checkpoint(args.weights), args.weights).float().eval()
    calib = calibration_batch(cfg, args.img, 32)
    base = evaluate(model, samples, cfg.names, args.img, 16, 2)["map50_95"]
    print(f"{args.weights}: mAP50-95 {base:.4f} unpruned (coco128 val, {args.img})\n")
    print("| ratio | mAP50-95 dropped as is | mAP50-95 means folded |")
    print("| --- | --- | --- |")
    for r in args.ratios:
        row = []
        for c in (None, calib):
            pruned, _, _ = prune(copy.deepcopy(model), r, None, 0.1, 8, calib=c)
            row.append(evaluate(pruned, samples, cfg.names, args.img, 16, 2)["map50_95"])
        print(f"| {r:g} | {row[0]:.4f} | {row[1]:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
