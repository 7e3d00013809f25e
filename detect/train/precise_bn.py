"""Precise BatchNorm (Wu & Johnson 2021, "Rethinking BatchNorm"): before validation, re-estimate
BN running statistics of the evaluated weights over N training batches.

The EMA of running statistics lags the weights it normalises; averaging over a fixed set of
batches with the final weights gives the statistics those weights actually produce. Under DDP
every rank processes its own batches and the per-layer means and variances are all-reduced.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.distributed as dist
from torch import nn

from detect.optim import batchnorms


@torch.no_grad()
def recompute_bn_stats(model: nn.Module, batches, n: int, device, world: int = 1) -> int:
    """Replace ``model``'s BN running statistics by their average over ``n`` batches; returns batches used.

    ``batches`` yields (uint8 images, labels) as the training loader does.
    """
    bns = batchnorms(model)
    if not bns or n <= 0:
        return 0
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
    was_training = model.training
    model.train()
    used = 0
    for images, _ in itertools.islice(batches, n):
        model(images.to(device, non_blocking=True).float().div_(255))
        used += 1
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    if world > 1:
        for bn in bns:
            for t in (bn.running_mean, bn.running_var):
                dist.all_reduce(t)
                t.div_(world)
    model.train(was_training)
    return used


def precise_copy(ema_module: nn.Module, run) -> tuple[nn.Module, int]:
    """A copy of the EMA weights with precise BN statistics (the original keeps averaging untouched)."""
    model = copy.deepcopy(ema_module)
    used = recompute_bn_stats(model, iter(run.data.loader), run.config.hyp.precise_bn_batches, run.device,
                              run.world)
    return model.eval(), used
