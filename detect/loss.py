"""The YOLOv5 loss: anchor matching by width/height ratio with two neighbouring cells, CIoU box
loss, BCE objectness against IoU targets with per-level balance, BCE (or focal) class loss.

Target rows of class -1 are ignore regions (detect/data/labels.py): they match no anchor, and the
objectness of every cell whose centre lies in one is left out of the loss unless an object was matched
there. A region over a whole image leaves only the distillation term (an unlabelled image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert, complete_box_iou_loss, sigmoid_focal_loss

from detect.hyp import Hyp
from detect.model import Detect

# Neighbour offsets: the centre cell, then left, up, right, down (in half-cell units).
_OFFSETS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32) * 0.5


def distillation_loss(student: list[torch.Tensor], teacher: list[torch.Tensor], hyp: Hyp) -> torch.Tensor:
    """Output distillation for YOLO heads: soft-target BCE on objectness everywhere, and where the teacher
    sees an object (weighted by its objectness) soft-target BCE on each class and L2 on the box outputs.

    Both lists are raw per-level maps (b, na, h, w, 5 + nc) of networks with the same head layout.
    YOLO's classes are independent sigmoids, so each class is matched on its own (a softmax KL over
    classes is identically zero for a one-class task and ignores co-occurring labels). The box term
    compares the decoded-scale sigmoid outputs the Detect layer turns into boxes. At the default gains
    each term's gradient is of the order of the detection loss's (measured on yolov5n: obj 2.8, cls 1.5,
    box 3.4 against 3.4), so a model distilled from itself stays where it is.
    """
    temp = hyp.distill_temperature
    obj_sum = cls_sum = box_sum = torch.zeros((), device=student[0].device)
    for s, t in zip(student, teacher):
        s, t = s.float(), t.float().detach()
        t_obj = t[..., 4].sigmoid()
        obj_sum = obj_sum + F.binary_cross_entropy_with_logits(s[..., 4], t_obj)
        weight = t_obj / t_obj.sum().clamp(min=1e-6)
        if s.shape[-1] > 6:  # mean over classes, as the detection loss's class term: a sum over 12 classes
            # times T^2 gave 20x the detection loss's gradient and wrecked a model distilled from itself.
            # One class: no term, as in the detection loss (distilling that logit alone took a person model
            # distilled from itself from mAP50-95 0.333 to 0.010 in one epoch)
            cls = F.binary_cross_entropy_with_logits(s[..., 5:] / temp, (t[..., 5:] / temp).sigmoid(), reduction="none")
            cls_sum = cls_sum + (cls.mean(-1) * weight).sum()
        box = (s[..., :4].sigmoid() - t[..., :4].sigmoid()).pow(2).sum(-1)
        box_sum = box_sum + (box * weight).sum()
    return hyp.distill_cls * cls_sum + hyp.distill_obj * obj_sum + hyp.distill_box * box_sum


def ignored_cells(regions: torch.Tensor, batch: int, h: int, w: int) -> torch.Tensor:
    """(batch, 1, h, w) bool: the cells of an h x w grid whose centre lies inside one of ``regions`` (rows of
    image index, class, cx, cy, w, h normalised) of their image."""
    device = regions.device
    cx, cy = (torch.arange(w, device=device) + 0.5) / w, (torch.arange(h, device=device) + 0.5) / h
    x1, x2 = regions[:, 2] - regions[:, 4] / 2, regions[:, 2] + regions[:, 4] / 2
    y1, y2 = regions[:, 3] - regions[:, 5] / 2, regions[:, 3] + regions[:, 5] / 2
    in_x = (cx >= x1[:, None]) & (cx <= x2[:, None])  # (k, w)
    in_y = (cy >= y1[:, None]) & (cy <= y2[:, None])  # (k, h)
    hits = torch.zeros(batch, h, w, device=device)
    hits.index_add_(0, regions[:, 0].long(), (in_y[:, :, None] & in_x[:, None, :]).float())
    return (hits > 0)[:, None]


class YOLOLoss:
    """``loss(preds, targets) -> (total * batch, [box, obj, cls])``.

    ``preds``: the training-mode Detect output ``[(b, na, h, w, 5 + nc)]`` per level.
    ``targets``: ``(n, 6)`` rows of image index, class, cx, cy, w, h (normalised to the input).
    """

    def __init__(self, detect: Detect, hyp: Hyp, img_size: int):
        self.na, self.nc, self.nl = detect.na, detect.nc, detect.nl
        self.detect = detect
        self.balance = {3: [4.0, 1.0, 0.4]}.get(self.nl, [4.0, 1.0, 0.25, 0.06, 0.02])
        # Gains are scaled so one setting works across class counts, level counts and input sizes.
        self.box_gain = hyp.box * 3 / self.nl
        self.cls_gain = hyp.cls * self.nc / 80 * 3 / self.nl
        self.obj_gain = hyp.obj * (img_size / 640) ** 2 * 3 / self.nl
        eps = hyp.label_smoothing
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps
        self.anchor_t = hyp.anchor_t
        self.fl_gamma, self.fl_alpha = hyp.fl_gamma, hyp.fl_alpha
        self.cls_pw, self.obj_pw = hyp.cls_pw, hyp.obj_pw

    def _bce(self, logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
        if self.fl_gamma > 0:
            return sigmoid_focal_loss(logits, target, self.fl_alpha, self.fl_gamma, reduction="mean")
        pw = torch.tensor([pos_weight], device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)

    def _objectness(self, logits: torch.Tensor, tobj: torch.Tensor, regions: torch.Tensor, matched) -> torch.Tensor:
        """Objectness BCE (or focal) over every anchor and cell; cells in an ignore region are left out
        unless a target was matched there (``matched``: image, anchor, y, x indices), still divided by all of
        them (a region removes terms, it rescales none)."""
        if not len(regions):
            return self._bce(logits, tobj, self.obj_pw)
        keep = ~ignored_cells(regions, *logits.shape[:1], *logits.shape[2:]).expand_as(logits).clone()
        keep[matched] = True
        if self.fl_gamma > 0:
            per = sigmoid_focal_loss(logits, tobj, self.fl_alpha, self.fl_gamma, reduction="none")
        else:
            pw = torch.tensor([self.obj_pw], device=logits.device)
            per = F.binary_cross_entropy_with_logits(logits, tobj, pos_weight=pw, reduction="none")
        return (per * keep).sum() / per.numel()

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor):
        device = preds[0].device
        acc = torch.float64 if preds[0].dtype == torch.float64 else torch.float32  # fp64 sums for reference checks
        lbox = torch.zeros(1, device=device, dtype=acc)
        lobj = torch.zeros(1, device=device, dtype=acc)
        lcls = torch.zeros(1, device=device, dtype=acc)
        regions = targets[targets[:, 1] < 0]
        if len(regions):
            targets = targets[targets[:, 1] >= 0]
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        for i, p in enumerate(preds):
            p = p if p.dtype == torch.float64 else p.float()  # fp32 at least (AMP); fp64 kept for reference checks
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(p.shape[:4], device=device, dtype=p.dtype)
            if len(b):
                pxy, pwh, _, pcls = p[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                box_loss = complete_box_iou_loss(
                    box_convert(torch.cat((pxy, pwh), 1), "cxcywh", "xyxy"),
                    box_convert(tbox[i], "cxcywh", "xyxy"),
                    reduction="none",
                )
                lbox += box_loss.mean()
                tobj[b, a, gj, gi] = (1.0 - box_loss).detach().clamp(0).to(p.dtype)  # objectness target = CIoU
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(len(b), device=device), tcls[i]] = self.cp
                    lcls += self._bce(pcls, t, self.cls_pw)
            lobj += self._objectness(p[..., 4], tobj, regions, (b, a, gj, gi)) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        bs = preds[0].shape[0]
        terms = {"box": lbox, "obj": lobj, "cls": lcls}  # each already weighted by its gain (box, obj, cls)
        return (lbox + lobj + lcls) * bs, {k: v.detach().reshape(()) for k, v in terms.items()}

    @torch.no_grad()
    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor):
        """For each level: target classes, boxes (cx, cy offsets in the cell, w, h in grid units),
        indices (image, anchor, grid y, grid x) and the matched anchors (grid units)."""
        device = targets.device
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=device)
        ai = torch.arange(na, device=device, dtype=torch.float32).view(na, 1).repeat(1, nt)
        t_all = torch.cat((targets.repeat(na, 1, 1), ai[..., None]), 2)  # (na, nt, 7): ..., anchor index
        off = _OFFSETS.to(device)
        for i, p in enumerate(preds):
            anchors = self.detect.anchors[i].to(device)
            h, w = p.shape[2], p.shape[3]
            gain[2:6] = torch.tensor([w, h, w, h], device=device, dtype=torch.float32)
            t = t_all * gain
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(r, 1 / r).max(2)[0] < self.anchor_t]  # shape match, not IoU
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                left, up = ((gxy % 1 < 0.5) & (gxy > 1)).T
                right, down = ((gxi % 1 < 0.5) & (gxi > 1)).T
                keep = torch.stack((torch.ones_like(left), left, up, right, down))
                t = t.repeat((5, 1, 1))[keep]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[keep]
            else:
                t, offsets = t_all[0], 0
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gij[:, 0].clamp_(0, w - 1)
            gij[:, 1].clamp_(0, h - 1)
            indices.append((b, a, gij[:, 1], gij[:, 0]))
            tbox.append(torch.cat((gxy - gij, gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
