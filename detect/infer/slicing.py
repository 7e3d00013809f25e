"""Sliced inference for large images with small objects (SAHI's ``get_sliced_prediction``).

The image is cut into overlapping windows of the slice size (the last row and column are
shifted inward so every window lies inside the image and has the slice's size), each window
runs at the network size like a whole image, in batches, and its boxes are offset back to
original pixels. The full-image pass is kept by default (slices alone lose objects larger
than a slice). The union is merged by greedy NMM with intersection over smaller, or NMS.
"""

from __future__ import annotations

import torch

from detect.boxes import non_max_suppression, prepare_image
from detect.data.dataset import to_tensor
from detect.infer.config import InferenceConfig
from detect.infer.merge import greedy_nmm, nms


def window_starts(length: int, size: int, overlap: float) -> list[int]:
    """Start offsets along one axis: steps of ``size * (1 - overlap)``, the last flush with the end."""
    size = min(size, length)
    step = max(1, int(size * (1 - overlap)))
    starts = list(range(0, length - size + 1, step))
    if starts[-1] + size < length:
        starts.append(length - size)
    return starts


def slice_windows(h: int, w: int, slice_hw: tuple[int, int], overlap: float) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) windows covering an h x w image, row by row."""
    sh, sw = min(slice_hw[0], h), min(slice_hw[1], w)
    return [(x, y, x + sw, y + sh) for y in window_starts(h, sh, overlap) for x in window_starts(w, sw, overlap)]


def sliced_detections(backend, img, img_size: int, c: InferenceConfig) -> torch.Tensor:
    """Every window's detections (n, 6) in original pixels, before merging: ``c.slice_hw`` windows overlapping
    by ``c.slice_overlap``, ``c.slice_batch`` at a time, NMS'd with ``c``'s thresholds."""
    windows = slice_windows(*img.shape[:2], c.slice_hw, c.slice_overlap)
    out = []
    for i in range(0, len(windows), c.slice_batch):
        tiles, boxes = [], []
        for x0, y0, x1, y1 in windows[i : i + c.slice_batch]:
            net, lb = prepare_image(img[y0:y1, x0:x1], img_size, backend.stride, shape=backend.fixed_shape,
                                    interpolation=c.interpolation)
            tiles.append(to_tensor(net))
            boxes.append((lb, x0, y0))
        pred = backend(torch.stack(tiles).float().div_(255))
        dets = non_max_suppression(pred, c.conf, c.iou, c.classes, c.agnostic, multi_label=c.multi_label,
                                   max_det=c.max_det)
        for det, (lb, x0, y0) in zip(dets, boxes):
            det = det.cpu()
            det[:, :4] = lb.to_original(det[:, :4]) + torch.tensor([x0, y0, x0, y0], dtype=det.dtype)
            out.append(det)
    return torch.cat(out) if out else torch.zeros((0, 6))


def merge_slices(det: torch.Tensor, c: InferenceConfig) -> torch.Tensor:
    """Merge the union of slice and full-image boxes: ``nmm`` (IoS ``c.slice_match``) or ``nms`` (IoU)."""
    if c.slice_merge == "nms":
        return nms(det, c.slice_match, c.agnostic, c.max_det)
    return greedy_nmm(det, c.slice_match, c.agnostic, c.max_det, c.slice_grow)
