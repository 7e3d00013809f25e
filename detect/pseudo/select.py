"""Each class's score thresholds for pseudo-labels, chosen on labelled images.

``keep``: the lowest score at which the boxes scoring at least that much reach the asked precision
(the most recall that precision allows). ``drop``: the same at a low precision (default 0.5): below it
a box is more likely wrong than right and its region may count as background. A box between the two
is uncertain: it must not become background (pseudo.label leaves its image out).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detect.metrics.matching import match


@dataclass(frozen=True)
class ClassThreshold:
    keep: float  # inf: no score reaches the precision; the class gets no pseudo-boxes
    drop: float
    precision: float  # of the kept boxes on the labelled images
    recall: float
    instances: int


def cut(scores: np.ndarray, tp: np.ndarray, instances: int, target: float) -> tuple[float, float, float]:
    """(threshold, precision, recall) of the lowest threshold whose kept boxes reach ``target`` precision."""
    order = np.argsort(-scores, kind="stable")
    s, hits = scores[order], np.cumsum(tp[order])
    precision = hits / np.arange(1, len(s) + 1)
    ok = np.flatnonzero(precision >= target)
    if not len(ok):
        return float("inf"), 0.0, 0.0
    i = int(ok[-1])
    while i + 1 < len(s) and s[i + 1] == s[i]:  # a threshold keeps every box of its score
        i += 1
    return float(s[i]), float(precision[i]), float(hits[i] / max(instances, 1))


def class_thresholds(g: dict, d: dict, nc: int, precision: float, drop_precision: float = 0.5) -> list[ClassThreshold]:
    """``g``/``d``: ground truth and detections as ``detect.metrics.as_arrays`` gives them (IoU 0.5 matching)."""
    m = match(g, d, 0.5, max_det=10**6)
    out = []
    for c in range(nc):
        mine = d["cls"] == c
        n = int((g["cls"] == c).sum())
        keep, p, r = cut(d["score"][mine], m.tp[mine], n, precision)
        drop, _, _ = cut(d["score"][mine], m.tp[mine], n, drop_precision)
        out.append(ClassThreshold(keep, min(drop, keep), p, r, n))
    return out
