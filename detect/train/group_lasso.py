"""Sparsity regularisers for network slimming, as training gradient hooks (see detect.train.hooks).

``GroupSparsity``: group lasso over each prunable group (DepGraph's group-norm regularisation,
Fang et al. 2023): for channel r of a group with m coupled BatchNorms the penalty is
``strength * sqrt(m) * ||gamma_r||_2``, whose gradient ``strength * sqrt(m) * gamma / ||gamma_r||``
pushes every coupled gamma of r toward zero *together*, the unit the surgery removes. The
sqrt(m) weight keeps the push per gamma comparable to the channel L1 term at the same strength.
Per-channel L1 shrinks each gamma alone: coupled channels drift apart and a group keeps a
large member while its siblings vanish, so nothing becomes removable.
"""

from __future__ import annotations

import torch
from torch import nn

from detect.groups import PrunableGroup, prunable_groups
from detect.optim import sparsity_strength


class GroupSparsity:
    def __init__(self, strength: float, schedule: str = "constant", groups: list[PrunableGroup] | None = None):
        self.strength, self.schedule = strength, schedule
        self.groups = groups
        self._model_id = None

    def current(self, progress: float) -> float:
        return sparsity_strength(self.strength, self.schedule, progress)

    @torch.no_grad()
    def __call__(self, model: nn.Module, progress: float) -> None:
        strength = self.current(progress)
        if strength <= 0:
            return
        if self.groups is None or self._model_id != id(model):  # traced once, on the model being trained
            self.groups, self._model_id = prunable_groups(model), id(model)
        for g in self.groups:
            add_group_lasso_grad(g, strength)


def add_group_lasso_grad(group: PrunableGroup, strength: float) -> None:
    """grad(gamma) += strength * sqrt(m) * gamma / ||gamma_r||_2 for every coupled gamma of root channel r."""
    first = group.members[0][0].weight
    norm2 = torch.zeros(group.size, device=first.device, dtype=torch.float32)
    count = torch.zeros(group.size, device=first.device)
    for bn, idx, ridx in group.members:
        idx, ridx = idx.to(first.device), ridx.to(first.device)
        norm2.index_add_(0, ridx, bn.weight.detach().float()[idx].pow(2))
        count.index_add_(0, ridx, torch.ones(len(ridx), device=first.device))
    scale = strength * count.sqrt() / norm2.sqrt().clamp_min(1e-12)
    for bn, idx, ridx in group.members:
        if bn.weight.grad is None:
            continue
        idx, ridx = idx.to(first.device), ridx.to(first.device)
        bn.weight.grad.index_add_(0, idx, (bn.weight.detach().float()[idx] * scale[ridx]).to(bn.weight.grad.dtype))
