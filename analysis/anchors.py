"""Anchors for the data: k-means on box width/height at the input size, refined genetically.

Fitness follows YOLOv5's training-time matching: a box matches an anchor when neither side
ratio exceeds ``anchor_t`` (4.0), so the ratio metric is min(r, 1/r) over both sides and a
box counts when its best metric exceeds 1/anchor_t. Best possible recall (BPR) is the share
of boxes that some anchor can match; anchors-above-threshold (AAT) is how many match on
average.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.vq import kmeans

from detect.geometry import DEFAULT_ANCHORS

MIN_SIZE_PX = 2.0  # boxes under 2 px at input size cannot be learned; YOLOv5 filters them too


def _ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    r = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(r, 1 / r).min(2)  # (boxes, anchors)


def anchor_metrics(wh: np.ndarray, anchors: np.ndarray, anchor_t: float = 4.0) -> dict:
    x = _ratio_metric(wh, anchors)
    best = x.max(1)
    thr = 1 / anchor_t
    return {"bpr": float((best > thr).mean()), "aat": float((x > thr).sum(1).mean())}


def _fitness(wh: np.ndarray, anchors: np.ndarray, thr: float) -> float:
    best = _ratio_metric(wh, anchors).max(1)
    return float((best * (best > thr)).mean())


def fit_anchors(
    wh: np.ndarray, n: int = 9, anchor_t: float = 4.0, generations: int = 500, seed: int = 0, max_boxes: int = 10_000
) -> np.ndarray:
    """``n`` anchors (w, h) sorted by area. ``wh``: box sizes in input pixels."""
    rng = np.random.default_rng(seed)
    wh = wh[(wh >= MIN_SIZE_PX).all(1)]
    if len(wh) > max_boxes:  # the fitness is a mean: a large random subset gives the same anchors
        wh = wh[rng.choice(len(wh), max_boxes, replace=False)]
    if len(wh) < n:
        raise ValueError(f"need at least {n} boxes of {MIN_SIZE_PX:g}+ px to fit {n} anchors, got {len(wh)}")
    scale = wh.std(0)
    np.random.seed(seed)  # scipy's kmeans draws its initial centroids from numpy's global state
    k, _ = kmeans(wh / scale, n, iter=30)
    k = k * scale
    if len(k) < n:  # kmeans dropped empty clusters: fill from random boxes
        k = np.concatenate([k, wh[rng.choice(len(wh), n - len(k), replace=False)]])
    thr = 1 / anchor_t
    best_f = _fitness(wh, k, thr)
    for _ in range(generations):
        v = np.ones_like(k)
        while (v == 1).all():  # mutate until something changes
            mask = rng.random(k.shape) < 0.9
            v = (mask * rng.random() * rng.standard_normal(k.shape) * 0.1 + 1).clip(0.3, 3.0)
        candidate = (k * v).clip(min=MIN_SIZE_PX)
        f = _fitness(wh, candidate, thr)
        if f > best_f:
            best_f, k = f, candidate
    return k[np.argsort(k.prod(1))]


def anchor_report(wh: np.ndarray, img: int, anchor_t: float = 4.0, generations: int = 500) -> dict:
    default = np.array(DEFAULT_ANCHORS, dtype=float).reshape(-1, 2)
    valid = wh[(wh >= MIN_SIZE_PX).all(1)]
    out = {
        "input_size": img,
        "anchor_t": anchor_t,
        "boxes_used": int(len(valid)),
        "boxes_under_2px": int(len(wh) - len(valid)),
        "default": {"anchors": default.round(1).tolist(), **anchor_metrics(valid, default, anchor_t)},
    }
    if len(valid) >= 9:
        fitted = fit_anchors(valid, 9, anchor_t, generations)
        out["fitted"] = {"anchors": fitted.round(1).tolist(), **anchor_metrics(valid, fitted, anchor_t)}
    return out


def anchors_yaml(fitted: list[list[float]], comment: str) -> str:
    """The snippet the trainer reads: three rows (P3/8, P4/16, P5/32) of three w,h pairs."""
    rows = [fitted[i : i + 3] for i in (0, 3, 6)]
    lines = [f"# {comment}", "anchors:"]
    for level, row in zip(("P3/8", "P4/16", "P5/32"), rows):
        flat = ", ".join(f"{v:.0f}" for pair in row for v in pair)
        lines.append(f"  - [{flat}]  # {level}")
    return "\n".join(lines) + "\n"
