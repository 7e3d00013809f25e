"""Network geometry without torch: strides, default anchors, stride-aligned input shapes.

Shared by the model, the data pipeline and the dataset analysis (which must not need torch).
"""

from __future__ import annotations

import math

import numpy as np

STRIDES = (8, 16, 32)
DEFAULT_ANCHORS = [
    [10, 13, 16, 30, 33, 23],  # P3/8
    [30, 61, 62, 45, 59, 119],  # P4/16
    [116, 90, 156, 198, 373, 326],  # P5/32
]


def resized_shape(h: int, w: int, img_size: int) -> tuple[int, int]:
    """(h, w) after resizing the long side to ``img_size``."""
    r = img_size / max(h, w)
    return max(1, round(h * r)), max(1, round(w * r))


def rect_shape(h: int, w: int, img_size: int, stride: int = 32) -> tuple[int, int]:
    """Smallest stride-aligned (h, w) that holds the image resized to ``img_size``.

    >>> rect_shape(1080, 1920, 640)
    (384, 640)
    """
    rh, rw = resized_shape(h, w, img_size)
    return math.ceil(rh / stride) * stride, math.ceil(rw / stride) * stride


def batch_shapes(hw: np.ndarray, batch_size: int, img_size: int, stride: int = 32, pad: float = 0.5) -> np.ndarray:
    """Per-batch network shapes for images already sorted by aspect ratio (official rect batching).

    ``hw`` is (n, 2) original heights and widths. A batch of landscape images gets height
    ``max(h/w) * img_size`` and width ``img_size`` (and vice versa), rounded up to the stride
    after adding ``pad`` strides; a batch mixing orientations is square.
    """
    ar = hw[:, 0] / hw[:, 1]
    n_batches = math.ceil(len(ar) / batch_size)
    shapes = np.ones((n_batches, 2))
    for b in range(n_batches):
        a = ar[b * batch_size : (b + 1) * batch_size]
        if a.max() < 1:
            shapes[b] = [a.max(), 1]
        elif a.min() > 1:
            shapes[b] = [1, 1 / a.min()]
    return (np.ceil(shapes * img_size / stride + pad) * stride).astype(int)
