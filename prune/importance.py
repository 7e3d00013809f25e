"""Data-driven channel importance: the first-order Taylor estimate of how much the detection loss changes
when a channel is removed (Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019).

Filter norms and |gamma| say how large a channel is, not whether the task needs it. A model moved to a
narrower task (COCO's yolov5n kept for its person class) carries channels that serve the classes it no
longer detects, and their norms are as large as any. Removing a BatchNorm channel (gamma, beta -> 0, so
SiLU outputs 0) changes the loss by about -(gamma * dL/dgamma + beta * dL/dbeta). That change is squared per
batch, averaged over batches and summed over the BatchNorms a prunable group couples, so it ranks channels
by what the task's own loss says they are worth. Measured on the person proof at 0.6x GFLOPs: mAP50-95
0.086 right after pruning where filter L1 (the l1 strategy) keeps 0.044, and 0.094 against 0.056 after the
same recovery (docs/BENCHMARKS.md, slimming round 13).
"""

from __future__ import annotations

import copy

import torch

from detect.data.labels import Sample, scan_split
from detect.data.train_dataset import TrainDataset
from detect.errors import UsageError
from detect.groups import prunable_groups
from detect.hyp import Hyp
from detect.loss import YOLOLoss

# what the estimate sees: the training images as training frames them (a random window under sliced
# training), without the mixing augmentations that make scenes no deployed model sees
_PLAIN = {"mosaic": 0.0, "mixup": 0.0, "gridmask": 0.0}


def spread(samples: list[Sample], n: int) -> list[Sample]:
    """``n`` samples spread evenly over the split (all of them when there are fewer)."""
    return samples[:: max(1, len(samples) // n)][:n] if n > 0 else []


def estimator(cfg, img: int, hyp: Hyp, images: int = 128, batch: int = 16):
    """``model -> taylor_scores`` on ``images`` labelled images spread over ``cfg``'s train split (val without one),
    scanned once: iterative steps and the proof's curve re-estimate on each model they start from."""
    split = "train" if "train" in cfg.splits else "val"
    samples = spread(scan_split(cfg, split, progress=False)[0], images)
    if not samples:
        raise UsageError(f"--strategy taylor needs labelled images: the {split} split of {cfg.file} has none")
    return lambda model: taylor_scores(model, samples, img, hyp, batch)


def taylor_scores(model, samples: list[Sample], img: int, hyp: Hyp, batch: int = 16) -> dict[str, torch.Tensor]:
    """Prunable group name -> per root channel: the mean over batches of the squared first-order loss change
    when that channel is removed, summed over the group's coupled BatchNorms.

    ``samples``: labelled training images (``spread`` picks a subset); ``hyp``: the loss gains and the
    framing (``slice``). The model is not touched: the estimate runs on an eval-mode float copy (running
    BatchNorm statistics: the function that is deployed), and gradients go to no parameter's ``.grad``.
    """
    if not samples:
        raise ValueError("taylor_scores needs labelled training images")
    net = copy.deepcopy(model).float().cpu().eval()
    hyp = hyp.replace(**_PLAIN)
    groups = prunable_groups(net)
    bns = list({id(bn): bn for g in groups for bn, _, _ in g.members}.values())
    params = [p for bn in bns for p in (bn.weight, bn.bias)]
    loss_fn = YOLOLoss(net.detect, hyp, img)
    data = TrainDataset(samples, img, hyp, augment_data=hyp.slice, seed=0)
    total = {g.name: torch.zeros(g.size) for g in groups}
    batches = 0
    for start in range(0, len(data), batch):
        x, targets = TrainDataset.collate([data[i] for i in range(start, min(start + batch, len(data)))])
        loss, _ = loss_fn(net(x.float() / 255, raw=True), targets)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        change = {}  # the loss's first-order change along (gamma, beta) -> 0, per channel
        for bn, g_w, g_b in zip(bns, grads[0::2], grads[1::2]):
            g_w = torch.zeros_like(bn.weight) if g_w is None else g_w
            g_b = torch.zeros_like(bn.bias) if g_b is None else g_b
            change[id(bn)] = (bn.weight * g_w + bn.bias * g_b).detach()
        for g in groups:
            per_batch = torch.zeros(g.size)
            for bn, idx, ridx in g.members:
                per_batch.index_add_(0, ridx, change[id(bn)][idx])
            total[g.name] += per_batch.pow(2)
        batches += 1
    return {name: s / batches for name, s in total.items()}
