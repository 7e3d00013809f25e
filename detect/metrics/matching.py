"""COCO's greedy matching at one IoU threshold, vectorised per (image, class), in NumPy.

pycocotools decides its true positives in ``COCOeval.evaluateImg``; faster-coco-eval does the
same in C++ but does not hand the per-detection decisions back. Precision, recall, F1, the
confusion matrix and the worst-image gallery need them, so this module reproduces that
matcher exactly (a test checks it against pycocotools' ``dtMatches`` on coco128):

- per image and class, detections by descending score (stable), only the first ``max_det``;
- each detection takes the still-unmatched ground truth with the highest IoU >= the threshold
  (on ties the later one, as pycocotools' ``<`` comparison does).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of (n, 4) and (m, 4) xywh boxes, float64, as pycocotools' ``maskUtils.iou`` for boxes."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2, bx2, by2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0])
    ih = np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1])
    inter = iw.clip(0) * ih.clip(0)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


@dataclass
class Matches:
    """Per-detection and per-ground-truth outcome at one IoU threshold (arrays in input order)."""

    tp: np.ndarray  # (n_det,) bool: matched a ground truth of its class
    gt_index: np.ndarray  # (n_det,) int: the matched ground truth's index, -1 if none
    scored: np.ndarray  # (n_det,) bool: among the first max_det of its image and class (COCOeval scores only these)
    gt_matched: np.ndarray  # (n_gt,) bool


def match(gt: dict, dt: dict, iou_thr: float = 0.5, max_det: int = 100) -> Matches:
    """Match detections to ground truth. ``gt``/``dt``: dicts of arrays ``image`` (n,), ``cls`` (n,),
    ``xywh`` (n, 4), and for ``dt`` also ``score`` (n,)."""
    n_dt, n_gt = len(dt["image"]), len(gt["image"])
    out = Matches(np.zeros(n_dt, bool), np.full(n_dt, -1), np.zeros(n_dt, bool), np.zeros(n_gt, bool))
    gt_groups = _groups(gt["image"], gt["cls"])
    order = np.lexsort((-np.asarray(dt["score"], np.float64), dt["cls"], dt["image"]))  # stable in input order
    keys = np.stack([np.asarray(dt["image"])[order], np.asarray(dt["cls"])[order]], 1)
    starts = np.flatnonzero(np.r_[True, (keys[1:] != keys[:-1]).any(1)]) if n_dt else np.array([], int)
    for s, e in zip(starts, np.r_[starts[1:], n_dt].astype(int)):
        idx = order[s:e][:max_det]
        out.scored[idx] = True
        g = gt_groups.get((int(keys[s, 0]), int(keys[s, 1])))
        if g is None:
            continue
        ious = box_iou_xywh(dt["xywh"][idx], gt["xywh"][g])
        taken = np.zeros(len(g), bool)
        for row, d in zip(ious, idx):
            cand = np.where(taken, -1.0, row)
            best = cand.max()
            if best < min(iou_thr, 1 - 1e-10):
                continue
            j = len(cand) - 1 - int(np.argmax(cand[::-1] == best))  # the last of equal maxima
            taken[j] = True
            out.tp[d], out.gt_index[d] = True, g[j]
        out.gt_matched[g] = taken
    return out


def _groups(image: np.ndarray, cls: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(np.asarray(image).tolist(), np.asarray(cls).tolist())):
        groups.setdefault((int(key[0]), int(key[1])), []).append(i)
    return {k: np.asarray(v) for k, v in groups.items()}


def pr_curves(scores: np.ndarray, tp: np.ndarray, cls: np.ndarray, instances: np.ndarray, grid: np.ndarray):
    """Precision and recall of each class as a function of the confidence threshold on ``grid``:
    (nc, len(grid)) each. A class without detections has precision and recall 0 everywhere."""
    nc = len(instances)
    p, r = np.zeros((nc, grid.size)), np.zeros((nc, grid.size))
    for c in range(nc):
        sel = cls == c
        if not sel.any() or instances[c] == 0:
            continue
        order = np.argsort(-scores[sel], kind="stable")
        s, t = scores[sel][order], tp[sel][order]
        ctp, cfp = np.cumsum(t), np.cumsum(~t)
        r[c] = np.interp(-grid, -s, ctp / instances[c], left=0)  # scores decrease along the curve
        p[c] = np.interp(-grid, -s, ctp / np.maximum(ctp + cfp, 1), left=1)
    return p, r
