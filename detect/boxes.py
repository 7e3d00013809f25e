"""Geometry shared by every stage: letterbox and its exact inverse, rectangular shapes, NMS.

Images go to the network in two steps, as in the official YOLOv5 evaluation: the long side
is resized to ``img_size`` (area interpolation when shrinking, as official val.py; bilinear
always, as official detect.py, with ``interpolation="linear"``), then the result is padded
with grey (114) to a stride-aligned shape. A 1080x1920 image at img 640 becomes 360x640,
padded to 384x640. ``Letterbox`` records the scale and offsets so boxes map back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torchvision

from detect.geometry import rect_shape, resized_shape

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Forward map: x_net = x_orig * gain[0] + pad[0]; y_net = y_orig * gain[1] + pad[1]."""

    gain: tuple[float, float]  # (x, y) scale from original to network pixels
    pad: tuple[int, int]  # (left, top) padding in network pixels
    orig_shape: tuple[int, int]  # (h, w) of the original image
    shape: tuple[int, int]  # (h, w) of the network input

    def to_original(self, boxes: torch.Tensor | np.ndarray, clip: bool = True):
        """Map xyxy boxes (..., 4) from network input pixels back to original pixels."""
        out = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.astype(np.float64, copy=True)
        out[..., [0, 2]] = (out[..., [0, 2]] - self.pad[0]) / self.gain[0]
        out[..., [1, 3]] = (out[..., [1, 3]] - self.pad[1]) / self.gain[1]
        if clip:
            h, w = self.orig_shape
            out[..., [0, 2]] = out[..., [0, 2]].clip(0, w)
            out[..., [1, 3]] = out[..., [1, 3]].clip(0, h)
        return out

    def to_network(self, boxes: torch.Tensor | np.ndarray):
        """Map xyxy boxes from original pixels to network input pixels."""
        out = boxes.clone() if isinstance(boxes, torch.Tensor) else boxes.astype(np.float64, copy=True)
        out[..., [0, 2]] = out[..., [0, 2]] * self.gain[0] + self.pad[0]
        out[..., [1, 3]] = out[..., [1, 3]] * self.gain[1] + self.pad[1]
        return out


INTERPOLATIONS = ("area", "linear")


def resize_long_side(img: np.ndarray, img_size: int, interpolation: str = "area") -> np.ndarray:
    """Resize so the long side is ``img_size``: ``area`` shrinks with area interpolation and grows
    bilinearly (official val.py), ``linear`` is bilinear both ways (official detect.py)."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    h, w = img.shape[:2]
    rh, rw = resized_shape(h, w, img_size)
    if (rh, rw) == (h, w):
        return img
    interp = cv2.INTER_AREA if rh < h and interpolation == "area" else cv2.INTER_LINEAR
    return cv2.resize(img, (rw, rh), interpolation=interp)


def letterbox(
    img: np.ndarray, shape: tuple[int, int], scaleup: bool = False, orig_shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Fit ``img`` inside ``shape`` (h, w) keeping its aspect ratio, centred, grey padding.

    ``orig_shape`` is the size before an earlier resize (``resize_long_side``) so the
    returned ``Letterbox`` maps all the way back to the original image.
    """
    h, w = img.shape[:2]
    h0, w0 = orig_shape or (h, w)
    r = min(shape[0] / h, shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    nh, nw = (h, w) if r == 1.0 else (max(1, round(h * r)), max(1, round(w * r)))
    if (nh, nw) != (h, w):
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    dh, dw = (shape[0] - nh) / 2, (shape[1] - nw) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if top or bottom or left or right:
        img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return img, Letterbox(gain=(nw / w0, nh / h0), pad=(left, top), orig_shape=(h0, w0), shape=tuple(shape))


def prepare_image(
    img: np.ndarray, img_size: int, stride: int = 32, shape: tuple[int, int] | None = None, interpolation: str = "area"
):
    """Original BGR image -> network-ready HWC image and its ``Letterbox`` (val: ``area``, predict: ``linear``)."""
    h0, w0 = img.shape[:2]
    resized = resize_long_side(img, img_size, interpolation)
    target = shape or rect_shape(h0, w0, img_size, stride)
    return letterbox(resized, target, scaleup=False, orig_shape=(h0, w0))


# --------------------------------------------------------------------------- boxes
def xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    return torchvision.ops.box_convert(x, "cxcywh", "xyxy")


def xyxy2xywh(x: torch.Tensor) -> torch.Tensor:
    return torchvision.ops.box_convert(x, "xyxy", "cxcywh")


def non_max_suppression(
    pred: torch.Tensor,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: list[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 300,
    max_nms: int = 30000,
) -> list[torch.Tensor]:
    """Per-image NMS on decoded YOLOv5 output ``(b, N, 5 + nc)``; returns ``[(n, 6)]`` of
    x1, y1, x2, y2, score, class with score = objectness x class probability.

    ``multi_label`` keeps every class above ``conf_thres`` per box (used for mAP), else only the
    best. At most ``max_nms`` highest-scoring candidates enter NMS, ``max_det`` leave it.
    """
    if not (0 <= conf_thres <= 1 and 0 <= iou_thres <= 1):
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    out = []
    for x in pred:
        x = x[x[:, 4] > conf_thres]
        if not len(x):
            out.append(pred.new_zeros((0, 6)))
            continue
        scores = x[:, 5:] * x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=True)
            det = torch.cat((box[i], scores[i, j, None], j[:, None].to(x.dtype)), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            det = torch.cat((box, conf, j.to(x.dtype)), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            det = det[(det[:, 5:6] == torch.tensor(classes, device=det.device)).any(1)]
        if len(det) > max_nms:
            det = det[det[:, 4].argsort(descending=True)[:max_nms]]
        if agnostic:
            keep = torchvision.ops.nms(det[:, :4], det[:, 4], iou_thres)
        else:
            keep = torchvision.ops.batched_nms(det[:, :4], det[:, 4], det[:, 5].long(), iou_thres)
        out.append(det[keep[:max_det]])
    return out
