"""COCO mAP: ground truth built in memory from the dataset's samples, scored by faster-coco-eval.

faster-coco-eval is COCOeval's algorithm in C++ (its 12 stats equal pycocotools' to 1e-4 on
coco128: tests/test_metrics.py; ~8x faster there). pycocotools stays the reference, selected
with ``engine="pycocotools"`` or ``DETECT_COCO_ENGINE=pycocotools``.
"""

from __future__ import annotations

import contextlib
import io
import os

import numpy as np

from detect.data.labels import Sample

ENGINES = ("faster-coco-eval", "pycocotools")


def coco_ground_truth(samples: list[Sample], names: list[str]) -> dict:
    """A COCO annotations dict (image ids = sample indices, category ids = class indices)."""
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
    return {"images": images, "annotations": anns, "categories": [{"id": i, "name": n} for i, n in enumerate(names)]}


def default_engine() -> str:
    engine = os.environ.get("DETECT_COCO_ENGINE", ENGINES[0])
    if engine not in ENGINES:
        raise ValueError(f"DETECT_COCO_ENGINE={engine}: expected one of {', '.join(ENGINES)}")
    if engine == ENGINES[0]:
        try:
            import faster_coco_eval  # noqa: F401
        except ImportError:
            return ENGINES[1]
    return engine


def coco_eval(gt: dict, detections: list[dict], max_det: int = 100, img_ids=None, engine: str | None = None):
    """Run COCOeval (bbox). Returns (12 stats, precision array (T, R, K, A, M)) or None without
    detections. ``img_ids`` restricts the evaluation to those images (AP per scene)."""
    if not detections or not gt["annotations"]:
        return None
    engine = engine or default_engine()
    with contextlib.redirect_stdout(io.StringIO()):
        if engine == "pycocotools":
            from pycocotools.coco import COCO  # lazy: the engine asked for, only
            from pycocotools.cocoeval import COCOeval
        else:
            from faster_coco_eval import COCO  # lazy: the engine asked for, only
            from faster_coco_eval import COCOeval_faster as COCOeval
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        dt = coco.loadRes(detections)
        kwargs = {} if engine == "pycocotools" else {"print_function": lambda *a, **k: None}
        ev = COCOeval(coco, dt, "bbox", **kwargs)
        ev.params.maxDets = [1, 10, max_det]
        if img_ids is not None:
            ev.params.imgIds = sorted(img_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats[:12], np.float64), np.asarray(ev.eval["precision"])


def class_ap(precision: np.ndarray, instances: np.ndarray) -> np.ndarray:
    """(nc, 10) AP per class and IoU threshold at area all, last maxDets; NaN for absent classes."""
    prec = precision[:, :, :, 0, -1]
    ap = np.full((len(instances), prec.shape[0]), np.nan)
    for k in range(min(prec.shape[2], len(instances))):
        if instances[k] > 0:
            p = prec[:, :, k]
            ap[k] = [row[row > -1].mean() if (row > -1).any() else 0.0 for row in p]
    return ap
