"""Merging overlapping detections: NMS, greedy non-maximum merging, Weighted Boxes Fusion.

All functions take and return (n, 6) tensors of x1, y1, x2, y2, score, class in original pixels.

- ``nms``: torchvision's (batched per class unless agnostic).
- ``greedy_nmm``: SAHI's GREEDYNMM for slices: the best box absorbs every box of its class whose
  intersection over the *smaller* box exceeds the threshold (a figure cut by a tile edge is a
  small box inside the full one, with a low IoU but an IoS near 1) and keeps the best score.
  It grows to the union of the absorbed boxes scoring at least ``grow_ratio`` of its own;
  less confident ones are only suppressed. SAHI grows to the union of all of them, which
  is harmless at a display threshold but at mAP's 0.001 lets hundreds of faint boxes inflate
  every box: mAP 0.003 instead of 0.248 on the synthetic set (docs/BENCHMARKS.md).
- ``fuse``: several models' (or image sizes') detections of one image through
  ``ensemble_boxes.weighted_boxes_fusion`` (boxes averaged, weighted by score and model weight)
  or plain NMS over their union.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision


def nms(det: torch.Tensor, iou: float, agnostic: bool = False, max_det: int | None = None) -> torch.Tensor:
    if not len(det):
        return det
    if agnostic:
        keep = torchvision.ops.nms(det[:, :4], det[:, 4], iou)
    else:
        keep = torchvision.ops.batched_nms(det[:, :4], det[:, 4], det[:, 5].long(), iou)
    return det[keep[:max_det]]


def intersection_over_smaller(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(n, m) intersection area over the smaller of the two boxes' areas (xyxy)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a, area_b = torchvision.ops.box_area(a), torchvision.ops.box_area(b)
    return inter / torch.minimum(area_a[:, None], area_b[None]).clamp(min=1e-9)


def greedy_nmm(det: torch.Tensor, threshold: float = 0.5, agnostic: bool = False, max_det: int | None = None,
               grow_ratio: float = 0.9) -> torch.Tensor:
    """Greedy non-maximum merging by intersection over smaller (see the module docstring)."""
    if not len(det):
        return det
    det = det[det[:, 4].argsort(descending=True, stable=True)]
    ios = intersection_over_smaller(det[:, :4], det[:, :4])
    if not agnostic:
        ios = ios * (det[:, 5, None] == det[None, :, 5])
    alive = torch.ones(len(det), dtype=torch.bool)
    out = []
    for i in range(len(det)):
        if not alive[i]:
            continue
        group = alive & (ios[i] > threshold)
        group[i] = True
        alive &= ~group
        grow = group & (det[:, 4] >= grow_ratio * det[i, 4])
        grow[i] = True
        members = det[grow]
        out.append(torch.cat((members[:, :2].min(0).values, members[:, 2:4].max(0).values, det[i, 4:6])))
        if max_det is not None and len(out) == max_det:
            break
    return torch.stack(out)


def fuse(
    dets: list[torch.Tensor],
    image_hw: tuple[int, int],
    method: str = "wbf",
    weights: list[float] | None = None,
    iou: float = 0.55,
    skip: float = 0.0,
    conf_type: str = "avg",
    max_det: int | None = None,
) -> torch.Tensor:
    """Fuse one image's detections from several members. ``method``: ``wbf`` or ``nms``."""
    if len(dets) == 1:
        return dets[0][:max_det]
    if method == "nms":
        return nms(torch.cat(dets), iou, max_det=max_det)
    from ensemble_boxes import weighted_boxes_fusion

    h, w = image_hw
    scale = np.array([w, h, w, h], np.float64)
    boxes = [(d[:, :4].double().numpy() / scale).clip(0, 1) for d in dets]
    boxes, scores, labels = weighted_boxes_fusion(
        boxes,
        [d[:, 4].double().numpy() for d in dets],
        [d[:, 5].numpy().astype(int) for d in dets],
        weights=weights,
        iou_thr=iou,
        skip_box_thr=skip,
        conf_type=conf_type,
    )
    out = torch.from_numpy(np.concatenate([boxes * scale, scores[:, None], labels[:, None]], 1)).float()
    return out[out[:, 4].argsort(descending=True)][:max_det]
