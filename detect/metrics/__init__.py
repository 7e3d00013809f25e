"""Detection metrics: COCO mAP (faster-coco-eval, pycocotools as reference), precision and
recall at the best-F1 confidence, and the per-class table.

Ground truth is built in memory from the dataset's samples (any input format), detections
are COCO results in original-image pixels. AP comes from COCOeval; precision and recall
are read at the confidence that maximises mean F1 over classes (as YOLOv5 reports them),
from COCO's own matching at IoU 0.5 (``matching``), so one matcher decides both.
"""

from __future__ import annotations

import numpy as np

from detect.metrics.coco import class_ap, coco_eval, coco_ground_truth
from detect.metrics.matching import match, pr_curves

__all__ = ["coco_ground_truth", "evaluate", "format_table", "as_arrays", "CONF_GRID"]
CONF_GRID = np.linspace(0, 1, 1000)


def as_arrays(gt: dict, detections: list[dict]) -> tuple[dict, dict]:
    """COCO ground truth and results as column arrays for ``matching.match``."""
    anns = gt["annotations"]
    g = {
        "image": np.array([a["image_id"] for a in anns], int),
        "cls": np.array([a["category_id"] for a in anns], int),
        "xywh": np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4),
    }
    d = {
        "image": np.array([x["image_id"] for x in detections], int),
        "cls": np.array([x["category_id"] for x in detections], int),
        "xywh": np.array([x["bbox"] for x in detections], np.float64).reshape(-1, 4),
        "score": np.array([x["score"] for x in detections], np.float64),
    }
    return g, d


def evaluate(gt: dict, detections: list[dict], names: list[str], max_det: int = 100, engine: str | None = None) -> dict:
    """``detections``: COCO results (image_id, category_id, bbox xywh, score). Returns the metrics dict:
    map50, map50_95, precision, recall, map_small/medium/large (None where no object has that
    size), per_class, coco_stats."""
    nc = len(names)
    g, d = as_arrays(gt, detections)
    instances = np.bincount(g["cls"], minlength=nc)[:nc]
    images_per_class = np.array([len(set(g["image"][g["cls"] == c].tolist())) for c in range(nc)], int)
    coco = coco_eval(gt, detections, max_det, engine=engine)
    if coco is None:
        empty = {"map50": 0.0, "map50_95": 0.0, "precision": 0.0, "recall": 0.0}
        return {**empty, "map_small": None, "map_medium": None, "map_large": None,
                "per_class": _per_class(names, images_per_class, instances, None, None, None)}
    stats, precision = coco
    ap = class_ap(precision, instances)
    m = match(g, d, 0.5, max_det)
    p, r = pr_curves(d["score"][m.scored], m.tp[m.scored], d["cls"][m.scored], instances, CONF_GRID)
    valid = instances > 0
    best = best_f1_index(p, r, valid)
    by_size = {k: (float(stats[i]) if stats[i] >= 0 else None) for k, i in (("map_small", 3), ("map_medium", 4), ("map_large", 5))}
    return {
        "map50": float(stats[1]),
        "map50_95": float(stats[0]),
        "precision": float(p[valid, best].mean()) if valid.any() else 0.0,
        "recall": float(r[valid, best].mean()) if valid.any() else 0.0,
        **by_size,
        "per_class": _per_class(names, images_per_class, instances, (p[:, best], r[:, best]), ap[:, 0], ap.mean(1)),
        "coco_stats": [float(s) for s in stats],
    }


def best_f1_index(p: np.ndarray, r: np.ndarray, valid: np.ndarray) -> int:
    """Index on ``CONF_GRID`` of the confidence maximising the mean F1 of the ``valid`` classes."""
    f1 = 2 * p * r / np.maximum(p + r, 1e-16)
    return int(f1[valid].mean(0).argmax()) if valid.any() else 0


def _per_class(names, images, instances, pr, ap50, ap):
    rows = []
    for c, name in enumerate(names):
        rows.append(
            {
                "class": name,
                "images": int(images[c]),
                "instances": int(instances[c]),
                "precision": None if pr is None else float(pr[0][c]),
                "recall": None if pr is None else float(pr[1][c]),
                "map50": None if ap50 is None or np.isnan(ap50[c]) else float(ap50[c]),
                "map50_95": None if ap is None or np.isnan(ap[c]) else float(ap[c]),
            }
        )
    return rows


def format_table(result: dict, n_images: int, all_classes: bool = False) -> str:
    """The per-class table as YOLOv5 prints it; classes without instances are hidden unless asked."""
    head = f"{'Class':>20} {'Images':>8} {'Instances':>10} {'P':>7} {'R':>7} {'mAP50':>7} {'mAP50-95':>9}"
    total = sum(row["instances"] for row in result["per_class"])
    lines = [
        head,
        f"{'all':>20} {n_images:>8} {total:>10} {result['precision']:>7.3f} {result['recall']:>7.3f} "
        f"{result['map50']:>7.3f} {result['map50_95']:>9.3f}",
    ]
    for row in result["per_class"]:
        if row["instances"] == 0 and not all_classes:
            continue
        f = [("-" if row[k] is None else f"{row[k]:.3f}") for k in ("precision", "recall", "map50", "map50_95")]
        lines.append(
            f"{row['class']:>20} {row['images']:>8} {row['instances']:>10} {f[0]:>7} {f[1]:>7} {f[2]:>7} {f[3]:>9}"
        )
    return "\n".join(lines)
