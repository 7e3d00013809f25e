"""Pictures the trainer leaves behind: labelled training batches and the results.csv curves."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import torch


def save_batch(images: torch.Tensor, labels: torch.Tensor, names: list[str], path: Path, max_images: int = 16) -> None:
    """A grid of (augmented) training images with their boxes and class names, as the network sees them."""
    n = min(len(images), max_images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    h, w = images.shape[2:]
    grid = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for k in range(n):
        img = np.ascontiguousarray(images[k].permute(1, 2, 0).cpu().numpy()[..., ::-1])
        for _, c, cx, cy, bw, bh in labels[labels[:, 0] == k].tolist():
            # an ignore region (class -1): grey, named as such
            colour = (128, 128, 128) if c < 0 else tuple(int(v) for v in np.random.default_rng(int(c)).integers(40, 255, 3))
            p1 = (int((cx - bw / 2) * w), int((cy - bh / 2) * h))
            cv2.rectangle(img, p1, (int((cx + bw / 2) * w), int((cy + bh / 2) * h)), colour, 1)
            name = "ignore" if c < 0 else names[int(c)] if int(c) < len(names) else str(int(c))
            cv2.putText(img, name[:14], (p1[0], max(p1[1] - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, 0.3, colour, 1)
        r, q = divmod(k, cols)
        grid[r * h : (r + 1) * h, q * w : (q + 1) * w] = img
    cv2.imwrite(str(path), grid)


def plot_results(csv_path: Path, out: Path) -> None:
    import matplotlib  # lazy: plots only: CLIs start without it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    keys = [k for k in rows[0] if k != "epoch"]
    epochs = [int(r["epoch"]) for r in rows]
    cols = 5
    fig, axes = plt.subplots(math.ceil(len(keys) / cols), cols, figsize=(3.2 * cols, 2.6 * math.ceil(len(keys) / cols)))
    for ax, key in zip(axes.ravel(), keys):
        ax.plot(epochs, [float(r[key]) if r[key] not in ("", "nan") else np.nan for r in rows], marker=".")
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes.ravel()[len(keys) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
