"""COCO mAP through pycocotools, plus precision/recall and a per-class table.

Ground truth is built in memory from the dataset's samples (any input format), detections
are COCO results in original-image pixels. AP comes from ``COCOeval``; precision and recall
are read at the confidence that maximises mean F1 over classes (as YOLOv5 reports them),
computed from COCOeval's own per-detection matches at IoU 0.5, so one matcher decides both.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detect.data.labels import Sample


def coco_ground_truth(samples: list[Sample], names: list[str]) -> COCO:
    images, anns = [], []
    for img_id, s in enumerate(samples):
        images.append({"id": img_id, "file_name": s.path.name, "height": s.height, "width": s.width})
        for c, (cx, cy, w, h) in zip(s.classes.tolist(), s.boxes.tolist()):
            bw, bh = w * s.width, h * s.height
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img_id,
                    "category_id": int(c),
                    "iscrowd": 0,
                    "bbox": [(cx - w / 2) * s.width, (cy - h / 2) * s.height, bw, bh],
                    "area": bw * bh,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n} for i, n in enumerate(names)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def evaluate(gt: COCO, detections: list[dict], names: list[str], max_det: int = 100) -> dict:
    """``detections``: COCO results (image_id, category_id, bbox xywh, score). Returns the metrics dict."""
    nc = len(names)
    instances = np.bincount([a["category_id"] for a in gt.dataset["annotations"]], minlength=nc)
    images_per_class = np.zeros(nc, dtype=int)
    for c in range(nc):
        images_per_class[c] = len(set(gt.catToImgs.get(c, [])))
    empty = {"map50": 0.0, "map50_95": 0.0, "precision": 0.0, "recall": 0.0}
    if not detections or not gt.dataset["annotations"]:
        return {**empty, "per_class": _per_class(names, images_per_class, instances, None, None, None, None)}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(detections)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_det]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"][:, :, :, 0, -1]  # (iou T, recall R, class K) at area=all, maxDets=max_det
    ap = np.full((nc, prec.shape[0]), np.nan)
    for k, cat in enumerate(ev.params.catIds):
        p = prec[:, :, k]
        if instances[cat] > 0:
            ap[cat] = [row[row > -1].mean() if (row > -1).any() else 0.0 for row in p]
    p_cls, r_cls = _precision_recall_at_best_f1(ev, nc, instances)
    valid = instances > 0
    return {
        "map50": float(ev.stats[1]),
        "map50_95": float(ev.stats[0]),
        "precision": float(p_cls[valid].mean()) if valid.any() else 0.0,
        "recall": float(r_cls[valid].mean()) if valid.any() else 0.0,
        "per_class": _per_class(names, images_per_class, instances, p_cls, r_cls, ap[:, 0], ap.mean(1)),
        "coco_stats": [float(s) for s in ev.stats],
    }


def _precision_recall_at_best_f1(ev: COCOeval, nc: int, instances: np.ndarray):
    """Per-class P and R at the single confidence maximising mean F1 (IoU 0.5, area all)."""
    max_det = ev.params.maxDets[-1]
    scores = [[] for _ in range(nc)]
    tps = [[] for _ in range(nc)]
    for e in ev.evalImgs:
        if e is None or e["aRng"] != ev.params.areaRng[0] or e["maxDet"] != max_det:
            continue
        keep = ~np.asarray(e["dtIgnore"][0], dtype=bool)
        scores[e["category_id"]] += list(np.asarray(e["dtScores"])[keep])
        tps[e["category_id"]] += list(np.asarray(e["dtMatches"][0])[keep] > 0)
    grid = np.linspace(0, 1, 1000)
    p = np.zeros((nc, grid.size))
    r = np.zeros((nc, grid.size))
    for c in range(nc):
        if not scores[c] or instances[c] == 0:
            continue
        order = np.argsort(-np.asarray(scores[c]), kind="stable")
        s = np.asarray(scores[c])[order]
        tp = np.cumsum(np.asarray(tps[c])[order])
        fp = np.cumsum(~np.asarray(tps[c])[order])
        recall = tp / instances[c]
        precision = tp / np.maximum(tp + fp, 1)
        r[c] = np.interp(-grid, -s, recall, left=0)  # scores decrease along the curve
        p[c] = np.interp(-grid, -s, precision, left=1)
    f1 = 2 * p * r / np.maximum(p + r, 1e-16)
    valid = instances > 0
    best = int(f1[valid].mean(0).argmax()) if valid.any() else 0
    return p[:, best], r[:, best]


def _per_class(names, images, instances, p, r, ap50, ap):
    rows = []
    for c, name in enumerate(names):
        rows.append(
            {
                "class": name,
                "images": int(images[c]),
                "instances": int(instances[c]),
                "precision": None if p is None else float(p[c]),
                "recall": None if r is None else float(r[c]),
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
