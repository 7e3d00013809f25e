"""Gradient hooks: run on *unscaled* gradients after accumulation, before the optimiser step.

A hook is any callable ``hook(model, progress)`` (``progress`` = epoch / epochs, in [0, 1)).
Sparsity, centralisation and clipping are hooks; pruning adds its own through ``fit(hooks=...)``.
Order matters: regularisers first, then normalisation, then clipping (``default_hooks``).
"""

from __future__ import annotations

from torch import nn

from detect.hyp import Hyp
from detect.optim import bn_sparsity_grad, centralize_gradients, sparsity_strength
from detect.train.group_lasso import GroupSparsity


class ChannelSparsity:
    """Network slimming's L1 on every BatchNorm gamma (Liu et al. 2017), optionally decaying linearly."""

    def __init__(self, strength: float, schedule: str = "constant"):
        self.strength, self.schedule = strength, schedule

    def current(self, progress: float) -> float:
        return sparsity_strength(self.strength, self.schedule, progress)

    def __call__(self, model: nn.Module, progress: float) -> None:
        bn_sparsity_grad(model, self.current(progress))


class Centralize:
    """Gradient centralisation (Yong et al. 2020): zero-mean each filter's gradient."""

    def __call__(self, model: nn.Module, progress: float) -> None:
        centralize_gradients(model)


class ClipNorm:
    def __init__(self, max_norm: float):
        self.max_norm = max_norm

    def __call__(self, model: nn.Module, progress: float) -> None:
        nn.utils.clip_grad_norm_(model.parameters(), self.max_norm)


def sparsity_hook(hyp: Hyp):
    """The hyperparameters' sparsity regulariser (channel or group mode), or None when off."""
    if hyp.sparsity <= 0:
        return None
    if hyp.sparsity_mode == "group":
        return GroupSparsity(hyp.sparsity, hyp.sparsity_schedule)
    return ChannelSparsity(hyp.sparsity, hyp.sparsity_schedule)


def default_hooks(hyp: Hyp, extra=()) -> list:
    """Regularisers (the hyp's sparsity, then ``extra``), then centralisation, then clipping."""
    hooks = [h for h in (sparsity_hook(hyp),) if h is not None] + list(extra)
    if hyp.grad_centralize:
        hooks.append(Centralize())
    if hyp.grad_clip > 0:
        hooks.append(ClipNorm(hyp.grad_clip))
    return hooks
