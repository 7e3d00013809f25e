"""Where the points are lost: the numbers behind ``detect.val --report``.

All in NumPy on the COCO ground truth and results ``detect.val`` already has:
- ``confusion_matrix``: YOLOv5's (class-agnostic IoU matching at a confidence), with a
  background row (missed objects) and column (false boxes);
- ``class_curves``: precision, recall and F1 per class over the confidence, from COCO's own
  matching at IoU 0.5 (``detect.metrics.matching``), and each class's best-F1 threshold;
- ``ap_by_attribute``: COCO AP on the images of each value of a per-image attribute (scene);
- ``image_errors``: per image, the objects missed and the boxes that are false at a confidence,
  naming class confusions (a false box on an object of another class).
"""

from __future__ import annotations

import numpy as np

from detect.metrics import CONF_GRID, best_f1_index
from detect.metrics.coco import coco_eval
from detect.metrics.matching import Matches, box_iou_xywh, pr_curves


def confusion_matrix(g: dict, d: dict, nc: int, conf: float = 0.25, iou: float = 0.45) -> np.ndarray:
    """(nc + 1, nc + 1) counts, rows = predicted class, columns = true class; index ``nc`` is
    background (column: a false box; row: a missed object). Each box and object is matched at
    most once, highest IoU first, across classes."""
    m = np.zeros((nc + 1, nc + 1), np.int64)
    keep = d["score"] >= conf
    for img in np.union1d(g["image"], d["image"][keep]):
        gi = np.flatnonzero(g["image"] == img)
        di = np.flatnonzero((d["image"] == img) & keep)
        pairs = _unique_pairs(box_iou_xywh(d["xywh"][di], g["xywh"][gi]), iou)
        np.add.at(m, (d["cls"][di[pairs[:, 0]]], g["cls"][gi[pairs[:, 1]]]), 1)
        np.add.at(m, (nc, np.delete(g["cls"][gi], pairs[:, 1])), 1)
        np.add.at(m, (np.delete(d["cls"][di], pairs[:, 0]), nc), 1)
    return m


def _unique_pairs(ious: np.ndarray, thr: float) -> np.ndarray:
    """(k, 2) (detection, object) pairs with IoU > thr, each index at most once, highest IoU first."""
    det, obj = np.nonzero(ious > thr)
    order = np.argsort(-ious[det, obj], kind="stable")
    used_d, used_o, out = set(), set(), []
    for i in order:
        if det[i] not in used_d and obj[i] not in used_o:
            used_d.add(det[i])
            used_o.add(obj[i])
            out.append((det[i], obj[i]))
    return np.array(out, int).reshape(-1, 2)


def class_curves(d: dict, matches: Matches, instances: np.ndarray) -> dict:
    """P, R, F1 on ``CONF_GRID`` per class, each class's best-F1 confidence, and the global one."""
    s = matches.scored
    p, r = pr_curves(d["score"][s], matches.tp[s], d["cls"][s], instances, CONF_GRID)
    f1 = 2 * p * r / np.maximum(p + r, 1e-16)
    best = f1.argmax(1)
    valid = instances > 0
    return {
        "precision": p, "recall": r, "f1": f1,
        "best_conf": CONF_GRID[best], "best_f1": f1[np.arange(len(best)), best],
        "global_conf": float(CONF_GRID[best_f1_index(p, r, valid)]),
    }


def ap_by_attribute(gt: dict, detections: list[dict], values: list, max_det: int = 100) -> list[dict]:
    """COCO AP per value of a per-image attribute (``values[i]`` for image id i; None = unknown)."""
    rows = []
    instances = np.bincount([a["image_id"] for a in gt["annotations"]], minlength=len(values))
    for value in sorted({v for v in values if v is not None}, key=str):
        ids = [i for i, v in enumerate(values) if v == value]
        res = coco_eval(gt, detections, max_det, img_ids=ids)
        stats = res[0] if res is not None else None
        rows.append({
            "value": value if isinstance(value, (int, float, str)) else str(value),
            "images": len(ids),
            "instances": int(instances[ids].sum()),
            "map50_95": None if stats is None or stats[0] < 0 else float(stats[0]),
            "map50": None if stats is None or stats[1] < 0 else float(stats[1]),
        })
    return rows


def image_errors(g: dict, d: dict, matches: Matches, conf: float, n_images: int) -> list[dict]:
    """Per image at confidence ``conf``: missed objects (indices into ``g``), false boxes (indices
    into ``d``) and ``confused`` {false box index: the class of the object it covers at IoU >= 0.5},
    sorted worst first."""
    keep = (d["score"] >= conf) & matches.scored
    # An object counts as found if a kept detection matched it (COCO's matching at IoU 0.5).
    found = np.zeros(len(g["image"]), bool)
    found[matches.gt_index[keep & matches.tp]] = True
    false = keep & ~matches.tp
    out = []
    for img in range(n_images):
        gi = np.flatnonzero(g["image"] == img)
        fi = np.flatnonzero((d["image"] == img) & false)
        confused = {}
        if len(fi) and len(gi):
            ious = box_iou_xywh(d["xywh"][fi], g["xywh"][gi])
            for row, det in zip(ious, fi):
                j = int(row.argmax())
                if row[j] >= 0.5 and g["cls"][gi[j]] != d["cls"][det]:
                    confused[int(det)] = int(g["cls"][gi[j]])
        missed = gi[~found[gi]]
        out.append({"image": img, "missed": missed.tolist(), "false": fi.tolist(), "confused": confused,
                    "objects": len(gi)})
    out.sort(key=lambda e: (len(e["missed"]) + len(e["false"]), len(e["missed"])), reverse=True)
    return out
