"""Training-time augmentation. Boxes are ``(n, 4)`` xyxy pixels with a parallel class array.

- ``crop_boxes``: cut a window, keep a box only if enough of it stays inside, clip the rest.
  Shared by sliced training and mosaic, so both treat cut objects the same way.
- ``random_window``: sliced training — a window of the original image at native resolution,
  biased toward windows that contain objects (small far figures keep their pixels).
- ``mosaic`` / ``mixup`` / ``gridmask``: compositions applied before the per-image transforms.
- ``build_albumentations``: bbox-aware colour, blur, flips and scale/translate/rotate.
"""

from __future__ import annotations

import os
import warnings

import cv2
import numpy as np

from detect.boxes import PAD_VALUE
from detect.hyp import Hyp


def crop_boxes(boxes: np.ndarray, cls: np.ndarray, x0: float, y0: float, x1: float, y1: float, min_visible: float):
    """Boxes relative to the window (x0, y0, x1, y1): kept if >= ``min_visible`` of their area is inside;
    ignore regions (class < 0) whatever part of them is."""
    if not len(boxes):
        return boxes.reshape(0, 4), cls
    clipped = np.stack([boxes[:, 0].clip(x0, x1), boxes[:, 1].clip(y0, y1), boxes[:, 2].clip(x0, x1),
                        boxes[:, 3].clip(y0, y1)], 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    inside = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    keep = (inside >= min_visible * np.maximum(area, 1e-9)) | (cls < 0)
    keep &= (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return clipped[keep] - [x0, y0, x0, y0], cls[keep]


def random_window(img: np.ndarray, boxes: np.ndarray, cls: np.ndarray, window: int, min_visible: float,
                  object_bias: float, rng: np.random.Generator):
    """A ``window`` x ``window`` crop (smaller if the image is), centred near an object with
    probability ``object_bias``, else uniformly placed."""
    h, w = img.shape[:2]
    ww, wh = min(window, w), min(window, h)
    objects = boxes[cls >= 0]  # not an ignore region
    if len(objects) and rng.random() < object_bias:
        b = objects[rng.integers(len(objects))]
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0 = int(np.clip(cx - rng.uniform(0.1, 0.9) * ww, 0, w - ww))
        y0 = int(np.clip(cy - rng.uniform(0.1, 0.9) * wh, 0, h - wh))
    else:
        x0, y0 = int(rng.integers(0, w - ww + 1)), int(rng.integers(0, h - wh + 1))
    crop = img[y0 : y0 + wh, x0 : x0 + ww]
    b, c = crop_boxes(boxes, cls, x0, y0, x0 + ww, y0 + wh, min_visible)
    return crop, b, c


def place_letterboxed(img: np.ndarray, boxes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pad an image whose long side is <= ``size`` to size x size (centred), shifting its boxes."""
    h, w = img.shape[:2]
    top, left = (size - h) // 2, (size - w) // 2
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[top : top + h, left : left + w] = img
    return out, boxes + [left, top, left, top]


def mosaic(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, min_visible: float,
           rng: np.random.Generator):
    """Four (image, boxes, classes) around a random centre on a 2s canvas, then the central s x s."""
    s = size
    canvas = np.full((2 * s, 2 * s, 3), PAD_VALUE, np.uint8)
    xc, yc = (int(rng.uniform(0.5 * s, 1.5 * s)) for _ in range(2))
    all_boxes, all_cls = [], []
    for k, (img, boxes, cls) in enumerate(parts):
        h, w = img.shape[:2]
        if k == 0:  # top left: its bottom-right corner at the centre
            x1a, y1a, x2a, y2a = max(xc - w, 0), max(yc - h, 0), xc, yc
            x1b, y1b = w - (x2a - x1a), h - (y2a - y1a)
        elif k == 1:  # top right
            x1a, y1a, x2a, y2a = xc, max(yc - h, 0), min(xc + w, 2 * s), yc
            x1b, y1b = 0, h - (y2a - y1a)
        elif k == 2:  # bottom left
            x1a, y1a, x2a, y2a = max(xc - w, 0), yc, xc, min(2 * s, yc + h)
            x1b, y1b = w - (x2a - x1a), 0
        else:  # bottom right
            x1a, y1a, x2a, y2a = xc, yc, min(xc + w, 2 * s), min(2 * s, yc + h)
            x1b, y1b = 0, 0
        canvas[y1a:y2a, x1a:x2a] = img[y1b : y1b + (y2a - y1a), x1b : x1b + (x2a - x1a)]
        b, c = crop_boxes(boxes, cls, x1b, y1b, x1b + (x2a - x1a), y1b + (y2a - y1a), min_visible)
        all_boxes.append(b + [x1a, y1a, x1a, y1a])
        all_cls.append(c)
    boxes, cls = np.concatenate(all_boxes), np.concatenate(all_cls)
    half = s // 2
    out = canvas[half : half + s, half : half + s]
    b, c = crop_boxes(boxes, cls, half, half, half + s, half + s, min_visible)
    return np.ascontiguousarray(out), b, c


def mixup(a: tuple, b: tuple, rng: np.random.Generator):
    """Blend two samples with a Beta(32, 32) ratio; boxes of both are kept."""
    r = rng.beta(32.0, 32.0)
    img = (a[0].astype(np.float32) * r + b[0].astype(np.float32) * (1 - r)).astype(np.uint8)
    return img, np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def gridmask(img: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """GridMask: grey out a regular grid of squares; each cell keeps ``ratio`` of its side visible."""
    h, w = img.shape[:2]
    d = int(rng.integers(max(8, min(h, w) // 8), max(9, min(h, w) // 3)))
    hole = max(1, int(d * (1 - ratio)))
    ox, oy = int(rng.integers(d)), int(rng.integers(d))
    out = img.copy()
    for y in range(oy - d, h, d):
        for x in range(ox - d, w, d):
            out[max(y, 0) : max(y + hole, 0), max(x, 0) : max(x + hole, 0)] = PAD_VALUE
    return out


def build_albumentations(hyp: Hyp, seed: int = 0):
    """Bbox-aware per-image transforms, configured from the hyperparameters."""
    # Its import asks the network for a newer release unless told not to (a 2 s timeout; on an offline GPU
    # machine it printed a name-resolution error in every training run). Nothing we run goes online.
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # albumentations' other import-time notices
        import albumentations as A  # lazy: training only (val and predict start without it)

    geometric = hyp.scale > 0 or hyp.translate > 0 or hyp.degrees > 0
    transforms = [
        A.Affine(scale=(1 - hyp.scale, 1 + hyp.scale), translate_percent=(-hyp.translate, hyp.translate),
                 rotate=(-hyp.degrees, hyp.degrees), border_mode=cv2.BORDER_CONSTANT, fill=PAD_VALUE,
                 p=1.0 if geometric else 0.0),
        A.HorizontalFlip(p=hyp.fliplr),
        A.VerticalFlip(p=hyp.flipud),
        A.ColorJitter(brightness=hyp.hsv_v, contrast=0.0, saturation=hyp.hsv_s, hue=hyp.hsv_h, p=1.0),
        A.Blur(blur_limit=(3, 7), p=hyp.blur),
        A.MedianBlur(blur_limit=(3, 7), p=hyp.blur),
        A.ToGray(p=hyp.gray),
        A.CLAHE(p=hyp.clahe),
    ]
    bbox = A.BboxParams(format="pascal_voc", label_fields=["cls"], min_visibility=hyp.min_visibility, clip=True,
                        filter_invalid_bboxes=True, min_width=1, min_height=1)
    return A.Compose(transforms, bbox_params=bbox, seed=seed)
