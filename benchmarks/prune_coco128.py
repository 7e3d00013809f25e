"""Pruning on coco128: GFLOPs, ONNX Runtime latency and mAP against an unpruned baseline.

    python benchmarks/prune_coco128.py [--epochs 10] [--img 320] [--ratio 0.5] [--distill]

From the shared yolov5n.pt: (a) the unpruned model fine-tuned for --epochs on coco128 train;
(b) the model pruned by --ratio (global BN-gamma threshold, round-to 8) and fine-tuned for the
same epochs. Both are validated on coco128 val; (b) reports GFLOPs and ONNX Runtime CPU p50
latency at 384x640 before and after. Prints one table; everything runs in this process order
on this machine, so the ratios are comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = Path(os.environ.get("DETECT_SHARED", REPO.parent / "shared"))
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--distill", action="store_true")
    p.add_argument("--out", type=Path, default=REPO / "runs/prune_coco128")
    args = p.parse_args()
    common = ["--data", args.data, "--img", str(args.img), "--batch", "16", "--device", "cpu"]
    base = args.out / "unpruned"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "detect.train",
            "--weights",
            args.weights,
            "--epochs",
            str(args.epochs),
            "--workers",
            "2",
            "--out",
            str(base),
            *common,
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    unpruned = json.loads((base / "metrics.json").read_text())
    cmd = [
        sys.executable,
        "-m",
        "prune",
        "--weights",
        args.weights,
        "--ratio",
        str(args.ratio),
        "--finetune-epochs",
        str(args.epochs),
        "--latency-iters",
        "100",
        "--out",
        str(args.out / "pruned"),
        *common,
    ]
    subprocess.run(cmd + (["--distill"] if args.distill else []), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    r = json.loads((args.out / "pruned" / "report.json").read_text())
    lat = r["onnx_latency_ms"]
    print(
        f"| model | GFLOPs 384x640 | ORT CPU p50 ms 384x640 | mAP50-95 right after | mAP50-95 after {args.epochs} epochs |"
    )
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| yolov5n | {r['gflops_before']:.2f} | {lat['before']:.1f} | {r['map50_95_before']:.4f} (as given) | "
        f"{unpruned['map50_95']:.4f} |"
    )
    print(
        f"| pruned {args.ratio:g}{' + distill' if args.distill else ''} | {r['gflops_after']:.2f} "
        f"({r['gflops_after'] / r['gflops_before']:.2f}x) | {lat['after']:.1f} ({lat['after'] / lat['before']:.2f}x) | "
        f"{r['map50_95_pruned']:.4f} | {r['map50_95_finetuned']:.4f} |"
    )
    print(f"gap after fine-tuning: {100 * (unpruned['map50_95'] - r['map50_95_finetuned']):.1f} mAP points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
