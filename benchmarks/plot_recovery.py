"""Recovery curves of pruned models: validation mAP50-95 against training images seen.

    python benchmarks/plot_recovery.py --out docs/figures/stretch_recovery_ccp.png \\
        --curve "lr0 0.001" runs/b40/taylor/finetune/results.csv 951 \\
        --curve "lr0 0.003" runs/b40/taylor-lr3/finetune/results.csv 951 \\
        --line "stretch 0.4898" 0.4898 --line "0.9x start" 0.4543 --start 0.2505

Each curve is a fine-tuning run's results.csv and its training-set size: runs on different sets (951 labelled
and pseudo-labelled photos, or 1897 with the ignore regions) are compared by the images they trained on, which
is what their optimiser steps and wall time follow, not by epoch. Rows without a validation are skipped.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path


def read_curve(results_csv: Path, images_per_epoch: int) -> tuple[list[float], list[float]]:
    """(thousands of images seen, mAP50-95) at every validated epoch."""
    xs, ys = [], []
    with open(results_csv, newline="") as f:
        for row in csv.DictReader(f):
            value = float(row.get("map50_95") or "nan")
            if not math.isnan(value):
                xs.append(int(row["epoch"]) * images_per_epoch / 1000)
                ys.append(value)
    if not xs:
        raise SystemExit(f"{results_csv}: no validated epoch (no map50_95 value): was the run validated?")
    return xs, ys


def plot(curves: list[tuple[str, list[float], list[float]]], lines: list[tuple[str, float]], start: float | None,
         out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, xs, ys in curves:
        best = max(range(len(ys)), key=ys.__getitem__)
        xs, ys = ([0.0, *xs], [start, *ys]) if start is not None else (xs, ys)
        ax.plot(xs, ys, marker="o", markersize=3, label=f"{label} (best {max(ys):.4f})")
        ax.annotate(f"{max(ys):.3f}", (xs[best + (start is not None)], max(ys)), textcoords="offset points",
                    xytext=(0, 6), ha="center", fontsize=8)
    for (label, y), style in zip(lines, ("--", ":", "-.", "--")):
        ax.axhline(y, color="grey", linestyle=style, linewidth=1, label=label)
    ax.set_xlabel("training images seen (thousands)")
    ax.set_ylabel("val mAP50-95")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--curve", nargs=3, action="append", required=True, metavar=("LABEL", "RESULTS_CSV", "IMAGES"),
                   help="a fine-tuning run's results.csv and the training images of one epoch")
    p.add_argument("--line", nargs=2, action="append", default=[], metavar=("LABEL", "MAP"),
                   help="a horizontal reference line (a target, the start)")
    p.add_argument("--start", type=float, help="mAP50-95 right after the surgery: every curve starts there")
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = p.parse_args(argv)
    curves = [(label, *read_curve(Path(path), int(images))) for label, path, images in args.curve]
    plot(curves, [(label, float(y)) for label, y in args.line], args.start, args.out)
    for label, xs, ys in curves:
        print(f"{label}: " + ", ".join(f"{x:.1f}k {y:.4f}" for x, y in zip(xs, ys)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
