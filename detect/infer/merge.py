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

from detect.infer.config import InferenceConfig


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
    """Greedy non-maximum merging by intersection over smaller (see the module docstring), in tensor ops.

    In score order, a box is kept unless an earlier *kept* box of its class overlaps it beyond
    ``threshold``; each suppressed box joins the first kept box that overlaps it. That is the greedy loop
    (best box absorbs, repeat) written as a fixed point (``_greedy_keep``) and an arg-max, with a Python
    loop over classes only: on a dense 1920x1080 crowd the per-box loop took 40% of a sliced run.
    """
    if not len(det):
        return det
    det = det[det[:, 4].argsort(descending=True, stable=True)]
    n = len(det)
    keep, owner = torch.zeros(n, dtype=torch.bool), torch.arange(n)
    groups = [torch.arange(n)] if agnostic else [torch.nonzero(det[:, 5] == c).flatten() for c in det[:, 5].unique()]
    for idx in groups:
        # k suppresses j only when k comes first (scores sorted): the strict upper triangle
        over = (intersection_over_smaller(det[idx, :4], det[idx, :4]) > threshold).triu(1)
        kept = _greedy_keep(over)
        first = (over & kept[:, None]).to(torch.uint8).argmax(0)  # the first kept box overlapping each box
        keep[idx] = kept
        owner[idx] = torch.where(kept, idx, idx[first])
    keepers = torch.nonzero(keep).flatten()[:max_det]  # in score order, as the loop emits them
    slot = torch.full((n,), -1, dtype=torch.long)
    slot[keepers] = torch.arange(len(keepers))
    member = (slot[owner] >= 0) & ((det[:, 4] >= grow_ratio * det[owner, 4]) | (owner == torch.arange(n)))
    target = slot[owner[member]]
    lo = det[keepers, :2].clone().scatter_reduce_(0, target[:, None].expand(-1, 2), det[member, :2], "amin")
    hi = det[keepers, 2:4].clone().scatter_reduce_(0, target[:, None].expand(-1, 2), det[member, 2:4], "amax")
    return torch.cat((lo, hi, det[keepers, 4:6]), 1)


def greedy_nmm_loop(det: torch.Tensor, threshold: float = 0.5, agnostic: bool = False, max_det: int | None = None,
                    grow_ratio: float = 0.9) -> torch.Tensor:
    """The per-box loop ``greedy_nmm`` replaced (40% of a sliced run on a dense frame), kept as the
    reference that tests hold it equal to and ``benchmarks/slice_merge.py`` times it against."""
    if not len(det):
        return det
    det = det[det[:, 4].argsort(descending=True, stable=True)]
    ios = intersection_over_smaller(det[:, :4], det[:, :4])
    if not agnostic:
        ios = ios * (det[:, 5, None] == det[None, :, 5])
    alive, out = torch.ones(len(det), dtype=torch.bool), []
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


def _greedy_keep(over: torch.Tensor) -> torch.Tensor:
    """Which boxes greedy suppression keeps, given ``over[k, j]``: k (earlier) suppresses j if k is kept.

    Iterates keep = no kept box suppresses it, from all kept (Cluster-NMS, Zheng et al. 2021): after t
    rounds the first t boxes are settled, and the only fixed point is the greedy answer, so it stops
    after as many rounds as the longest chain of suppressions, not the number of boxes.
    """
    keep = torch.ones(len(over), dtype=torch.bool)
    weights = over.float()
    for _ in range(len(over)):
        new = (keep.float() @ weights) == 0
        if torch.equal(new, keep):
            break
        keep = new
    return keep


def fuse(dets: list[torch.Tensor], image_hw: tuple[int, int], c: InferenceConfig,
         weights: list[float] | None = None) -> torch.Tensor:
    """Fuse one image's detections from several members (``weights``: one each, for WBF) by ``c.fuse``:
    ``wbf`` or ``nms``, at ``c.fuse_iou``; WBF skips boxes below ``c.fuse_skip`` and scores by ``c.fuse_conf``."""
    if len(dets) == 1:
        return dets[0][: c.max_det]
    if c.fuse == "nms":
        return nms(torch.cat(dets), c.fuse_iou, max_det=c.max_det)
    from ensemble_boxes import weighted_boxes_fusion  # lazy: only --fuse wbf needs it

    h, w = image_hw
    scale = np.array([w, h, w, h], np.float64)
    boxes = [(d[:, :4].double().numpy() / scale).clip(0, 1) for d in dets]
    boxes, scores, labels = weighted_boxes_fusion(
        boxes,
        [d[:, 4].double().numpy() for d in dets],
        [d[:, 5].numpy().astype(int) for d in dets],
        weights=weights,
        iou_thr=c.fuse_iou,
        skip_box_thr=c.fuse_skip,
        conf_type=c.fuse_conf,
    )
    out = torch.from_numpy(np.concatenate([boxes * scale, scores[:, None], labels[:, None]], 1)).float()
    return out[out[:, 4].argsort(descending=True)][: c.max_det]
