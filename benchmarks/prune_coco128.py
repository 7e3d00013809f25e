"""Pruning on coco128: GFLOPs, ONNX Runtime latency and mAP against unpruned baselines.

    python benchmarks/prune_coco128.py [--sparse-epochs 30 --sparsity 0.03] [--epochs 20] \\
        [--img 320] [--ratio 0.5] [--min-keep 0.1] [--distill]

From the shared yolov5n.pt, all on this machine in one process order (so ratios compare):
  1. (--sparse-epochs > 0) sparsity training: the trainer with --set sparsity=S (--sparse-hyp);
  2. prune by --ratio (global BN-gamma threshold, round-to 8) and fine-tune --epochs (--hyp);
  3. baseline: the unpruned yolov5n.pt fine-tuned for the same --epochs;
  4. (--sparse-epochs > 0) baseline: the unpruned yolov5n.pt trained for sparse + fine-tune
     epochs without sparsity (the same training budget as the pruned model got).
Every run validates on coco128 val at --img; GFLOPs and ONNX Runtime CPU p50 latency are
taken at 384x640. Prints one markdown table and writes OUT/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.hyp import load_hyp  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402
from detect.train.config import parse_overrides  # noqa: E402


def train(args, weights: str, epochs: int, out: Path, extra: list[str], hyp: str | None = None) -> dict:
    sets = parse_overrides([f"nominal_batch={args.nominal_batch}", *args.set, *extra])
    config = TrainConfig(data=args.data, weights=weights, epochs=epochs, out=out, img=args.img, batch=args.batch,
                         device="cpu", workers=2, val_interval=epochs, hyp=load_hyp(hyp or args.hyp, sets), quiet=True)
    return fit(config).summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shared = shared_dir()
    p.add_argument("--weights", default=str(shared / "weights/yolov5n.pt"))
    p.add_argument("--data", default=str(shared / "datasets/coco128/data.yaml"))
    p.add_argument("--sparse-epochs", type=int, default=0, help="sparsity-training epochs before pruning (0 = none)")
    p.add_argument("--sparse-weights", help="reuse this sparsity-trained checkpoint (trained for --sparse-epochs)")
    p.add_argument("--sparsity", type=float, default=0.05, help="L1 strength on BN gamma for sparsity training")
    p.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (pruned and baseline)")
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--nominal-batch", type=int, default=16, help="step every batch: coco128 is only 8 batches")
    p.add_argument("--ratio", type=float, default=0.5)
    p.add_argument("--hyp", default=str(REPO / "configs/hyp/finetune.yaml"), help="for fine-tuning and baselines")
    p.add_argument("--sparse-hyp", default=str(REPO / "configs/hyp/default.yaml"), help="for sparsity training")
    p.add_argument("--sparsity-schedule", default="linear", choices=["constant", "linear"])
    p.add_argument("--min-keep", type=float, default=0.1)
    p.add_argument("--set", nargs="*", default=[], help="extra hyperparameters for every training run")
    p.add_argument("--distill", action="store_true")
    p.add_argument("--skip-same-budget", action="store_true", help="leave out baseline 4 (the longest run)")
    p.add_argument("--out", type=Path, default=REPO / "runs/prune_coco128")
    args = p.parse_args()
    args.common = ["--data", args.data, "--img", str(args.img), "--batch", str(args.batch), "--device", "cpu"]

    source = args.weights
    if args.sparse_weights:
        source = args.sparse_weights
    elif args.sparse_epochs > 0:
        extra = [f"sparsity={args.sparsity}", f"sparsity_schedule={args.sparsity_schedule}"]
        train(args, args.weights, args.sparse_epochs, args.out / "sparse", extra, args.sparse_hyp)
        source = str(args.out / "sparse" / "weights" / "last.pt")  # the sparsest, not the best-scoring
    cmd = [sys.executable, "-m", "prune", "--weights", source, "--ratio", str(args.ratio), *args.common]
    cmd += ["--min-keep", str(args.min_keep)]
    cmd += ["--finetune-epochs", str(args.epochs), "--latency-iters", "100", "--out", str(args.out / "pruned")]
    cmd += ["--hyp", args.hyp, "--set", f"nominal_batch={args.nominal_batch}", *args.set]
    subprocess.run(cmd + (["--distill"] if args.distill else []), cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    r = json.loads((args.out / "pruned" / "report.json").read_text())
    base = train(args, args.weights, args.epochs, args.out / "unpruned", [])
    budget = None
    if args.sparse_epochs > 0 and not args.skip_same_budget:
        total = args.sparse_epochs + args.epochs
        budget = train(args, args.weights, total, args.out / "unpruned_same_budget", [])

    lat = r["onnx_latency_ms"]
    tag = f"pruned {args.ratio:g}" + (" + distill" if args.distill else "")
    print(
        f"| model | GFLOPs 384x640 | ORT CPU p50 ms 384x640 | mAP50-95 right after | mAP50-95 after {args.epochs} epochs |"
    )
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| {Path(args.weights).name} | {r['gflops_before']:.2f} | {lat['before']:.1f} | - | {base['map50_95']:.4f} |"
    )
    if budget is not None:
        print(
            f"| {Path(args.weights).name}, {args.sparse_epochs + args.epochs} epochs | {r['gflops_before']:.2f} | "
            f"{lat['before']:.1f} | - | {budget['map50_95']:.4f} |"
        )
    print(
        f"| {tag} | {r['gflops_after']:.2f} ({r['gflops_after'] / r['gflops_before']:.2f}x) | "
        f"{lat['after']:.1f} ({lat['after'] / lat['before']:.2f}x) | {r['map50_95_pruned']:.4f} | "
        f"{r['map50_95_finetuned']:.4f} |"
    )
    print(f"mAP50-95 of the source before pruning: {r['map50_95_before']:.4f}; gamma: {r['gamma']}")
    print(f"gap to the unpruned fine-tune: {100 * (base['map50_95'] - r['map50_95_finetuned']):.1f} points")
    if budget is not None:
        print(f"gap to the same-budget unpruned run: {100 * (budget['map50_95'] - r['map50_95_finetuned']):.1f} points")
    summary = {"args": {k: v for k, v in vars(args).items() if k != "out"}, "report": r, "unpruned": base}
    summary["unpruned_same_budget"] = budget
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
