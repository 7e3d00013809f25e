"""Test-time augmentation as official YOLOv5 does it (``models/yolo.py`` ``_forward_augment``).

Three passes: the input as is, scaled by 0.83 and flipped left-right, and scaled by 0.67.
Their raw predictions are mapped back to the input's pixels and concatenated *before* NMS,
so NMS (or mAP's multi-label NMS) sees every candidate. As upstream, the largest-object
layer of the full-size pass and the smallest-object layer of the smallest pass are dropped
(``_clip_augmented``): those layers see their objects at the wrong scale.

The mapping back uses each pass's exact per-axis scale (upstream divides by the nominal
0.83/0.67), so a box maps back to the pixel: ``tests/test_infer.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from detect.boxes import PAD_VALUE

SCALES = (1.0, 0.83, 0.67)
FLIP_LR = (False, True, False)


def scale_batch(x: torch.Tensor, ratio: float, stride: int, same_shape: bool) -> tuple[torch.Tensor, tuple[float, float]]:
    """Resize (b, 3, h, w) by ``ratio`` (bilinear) and pad with grey to a stride multiple, or back to
    (h, w) when ``same_shape`` (fixed-shape graphs). Returns the batch and the exact (x, y) scales."""
    if ratio == 1.0:
        return x, (1.0, 1.0)
    h, w = x.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    y = F.interpolate(x, size=s, mode="bilinear", align_corners=False)
    ph, pw = (h, w) if same_shape else (math.ceil(h * ratio / stride) * stride, math.ceil(w * ratio / stride) * stride)
    y = F.pad(y, [0, pw - s[1], 0, ph - s[0]], value=PAD_VALUE / 255)
    return y, (s[1] / w, s[0] / h)


def unscale(pred: torch.Tensor, scale: tuple[float, float], flip_lr: bool, width: int) -> torch.Tensor:
    """Map raw predictions (b, N, 5 + nc; cx, cy, w, h first) of a scaled (and flipped) pass back to
    the unaugmented input of ``width`` pixels."""
    pred = pred.clone()
    pred[..., [0, 2]] /= scale[0]
    pred[..., [1, 3]] /= scale[1]
    if flip_lr:
        pred[..., 0] = width - pred[..., 0]
    return pred


def clip_augmented(outs: list[torch.Tensor], layers: int = 3) -> list[torch.Tensor]:
    """Drop the last (largest-object) layer of the first pass and the first (smallest-object) layer
    of the last, assuming each output lists layers P3..P5 with 4x fewer cells per level."""
    cells = sum(4**i for i in range(layers))
    first, last = outs[0], outs[-1]
    drop_large = first.shape[1] // cells
    drop_small = (last.shape[1] // cells) * 4 ** (layers - 1)
    return [first[:, : first.shape[1] - drop_large], *outs[1:-1], last[:, drop_small:]]


class AugmentedBackend:
    """Wraps a backend (same interface): each call runs the three passes and merges them."""

    def __init__(self, backend):
        self.backend = backend
        self.names, self.stride, self.fixed_shape = backend.names, backend.stride, backend.fixed_shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        width = x.shape[3]
        outs = []
        for ratio, flip in zip(SCALES, FLIP_LR):
            xi, scale = scale_batch(x.flip(3) if flip else x, ratio, self.stride, self.fixed_shape is not None)
            outs.append(unscale(self.backend(xi).to(x.device), scale, flip, width))
        return torch.cat(clip_augmented(outs), 1)
