"""Ablation of the trainer's switches on the embedded synthetic dataset, one run each.

    python benchmarks/train_ablation.py [--data data/synthetic/data.yaml] [--epochs 10] [--img 320]

Every configuration starts from the same weights (the official yolov5n when ../shared has it,
else scratch) with the same seed, and adds one switch to the baseline. Prints a markdown
table of mAP50, mAP50-95 (EMA weights, val split) and training images/s, and writes it to
runs/ablation/ablation.json. Compare rows only within one run of this script.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.hyp import load_hyp  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402
from detect.train.config import parse_overrides  # noqa: E402

CONFIGS = [
    ("baseline", []),
    ("+sliced (640 windows)", ["slice=true", "slice_window=640"]),
    ("+multi-scale (0.5-1.5x)", ["multi_scale=true"]),
    ("+SAM (rho 0.05)", ["sam=true"]),
    ("+grad norm (clip 10, centralise)", ["grad_clip=10.0", "grad_centralize=true"]),
    ("+focal loss (gamma 1.5)", ["fl_gamma=1.5"]),
    ("+class-balanced sampling", ["class_balanced=true"]),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(REPO / "data/synthetic/data.yaml"))
    shared = shared_dir()
    default_w = shared / "weights/yolov5n.pt"
    p.add_argument("--weights", default=str(default_w) if default_w.is_file() else "")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--out", type=Path, default=REPO / "runs/ablation")
    args = p.parse_args()
    rows = []
    for name, sets in CONFIGS:
        out = args.out / name.split()[0].strip("+").replace("-", "_")
        hyp = load_hyp(None, {"close_mosaic": 2, **parse_overrides(sets)})
        fit(TrainConfig(data=args.data, model="yolov5n", weights=args.weights, img=args.img, epochs=args.epochs,
                        batch=args.batch, out=out, workers=2, device="cpu", val_interval=args.epochs, hyp=hyp,
                        quiet=True))
        m = json.loads((out / "metrics.json").read_text())
        speeds = [float(r["images_per_s"]) for r in csv.DictReader(open(out / "results.csv"))]
        rows.append(
            {
                "config": name,
                "map50": m["map50"],
                "map50_95": m["map50_95"],
                "images_per_s": sum(speeds) / len(speeds),
                "set": sets,
            }
        )
        print(
            f"{name}: mAP50 {m['map50']:.4f} mAP50-95 {m['map50_95']:.4f} {rows[-1]['images_per_s']:.1f} img/s",
            flush=True,
        )
    print("\n| configuration | mAP50 | mAP50-95 | train images/s |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['config']} | {r['map50']:.4f} | {r['map50_95']:.4f} | {r['images_per_s']:.1f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ablation.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
