"""Optimisation pieces the trainer switches on: parameter groups, LR schedules with warmup,
SAM, gradient normalisation, EMA and the network-slimming (BN-gamma L1) gradient.

Order within one optimiser step (all on *unscaled* gradients when AMP is on):
backward -> unscale -> sparsity term -> gradient centralisation -> clipping -> step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
from torch import nn

from detect.hyp import Hyp


# --------------------------------------------------------------------------- optimiser
def build_optimizer(model: nn.Module, hyp: Hyp, batch_size: int, accumulate: int) -> torch.optim.Optimizer:
    """Three groups: conv/linear weights (with decay), BN weights and biases (without)."""
    decay, no_decay, biases = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if name == "bias":
                biases.append(p)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                no_decay.append(p)
            else:
                decay.append(p)
    # Weight decay is defined for the nominal batch: scale it to the batch actually stepped.
    wd = hyp.weight_decay * batch_size * accumulate / hyp.nominal_batch
    if hyp.optimizer == "AdamW":
        opt = torch.optim.AdamW(no_decay, lr=hyp.lr0, betas=(hyp.momentum, 0.999), weight_decay=0.0)
    else:
        opt = torch.optim.SGD(no_decay, lr=hyp.lr0, momentum=hyp.momentum, nesterov=True)
    opt.add_param_group({"params": decay, "weight_decay": wd})
    opt.add_param_group({"params": biases, "weight_decay": 0.0})
    return opt


def lr_lambda(hyp: Hyp, epochs: int) -> Callable[[int], float]:
    """Epoch -> LR multiplier: cosine or linear from 1 to ``lrf``."""
    lrf = hyp.lrf
    if hyp.schedule == "linear":
        return lambda e: (1 - e / epochs) * (1.0 - lrf) + lrf
    return lambda e: ((1 - math.cos(e * math.pi / epochs)) / 2) * (lrf - 1) + 1


def apply_warmup(opt: torch.optim.Optimizer, it: int, warmup_iters: int, epoch_factor: float, hyp: Hyp) -> None:
    """Linear warmup: biases fall from ``warmup_bias_lr``, other groups rise from 0; momentum ramps up."""
    x = it / warmup_iters
    for j, group in enumerate(opt.param_groups):
        start = hyp.warmup_bias_lr if j == 2 else 0.0
        group["lr"] = start + x * (group["initial_lr"] * epoch_factor - start)
        if "momentum" in group:
            group["momentum"] = hyp.warmup_momentum + x * (hyp.momentum - hyp.warmup_momentum)
        elif "betas" in group:
            group["betas"] = (hyp.warmup_momentum + x * (hyp.momentum - hyp.warmup_momentum), 0.999)


# --------------------------------------------------------------------------- gradients
def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm of ``model``: BatchNorm2d and SyncBatchNorm alike (``--sync-bn`` converts them)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def bn_gammas(model: nn.Module) -> torch.Tensor:
    """All BatchNorm weights of ``model`` as one flat tensor (empty when there are none)."""
    ws = [m.weight.detach().flatten() for m in batchnorms(model) if m.weight is not None]
    return torch.cat(ws) if ws else torch.zeros(0)


def sparsity_strength(strength: float, schedule: str, progress: float) -> float:
    """The L1 / group-lasso strength at ``progress`` (epoch / epochs, in [0, 1)): the one place the
    ``sparsity_schedule`` is read (constant, or linear decay to 0)."""
    return strength * ((1 - progress) if schedule == "linear" else 1.0)


def bn_sparsity_grad(model: nn.Module, strength: float) -> None:
    """Network slimming: add ``strength * sign(gamma)`` to every BatchNorm weight gradient.

    Call after the AMP unscale: added to scaled gradients the term would be divided by the
    loss scale (2^16 at the start) and silently vanish.
    """
    if strength <= 0:
        return
    for m in batchnorms(model):
        if m.weight is not None and m.weight.grad is not None:
            m.weight.grad.add_(torch.sign(m.weight.detach()), alpha=strength)


def bn_gamma_summary(source: nn.Module | torch.Tensor) -> dict:
    """Where the BatchNorm |gamma| sit: the figures that show sparsity training working.

    ``source`` is a model (every BatchNorm, SyncBatchNorm included) or a tensor of gammas.
    Ordinary training leaves almost none below 0.01; after L1 sparsity training a large share is.
    """
    if isinstance(source, nn.Module):
        source = bn_gammas(source)
    a = source.detach().abs().float().cpu()
    if a.numel() == 0:
        return {"median": float("nan"), "p10": float("nan"), "share_below_0.01": 0.0, "count": 0}
    return {
        "median": float(a.median()),
        "p10": float(a.quantile(0.1)),
        "share_below_0.01": float((a < 1e-2).float().mean()),
        "count": int(a.numel()),
    }


def centralize_gradients(model: nn.Module) -> None:
    """Gradient centralisation: zero-mean each conv filter's gradient (weights with > 1 dim)."""
    for p in model.parameters():
        if p.grad is not None and p.grad.dim() > 1:
            p.grad.sub_(p.grad.mean(dim=tuple(range(1, p.grad.dim())), keepdim=True))


def normalize_gradients(model: nn.Module, hyp: Hyp) -> None:
    if hyp.grad_centralize:
        centralize_gradients(model)
    if hyp.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), hyp.grad_clip)


class SAM:
    """Sharpness-aware minimisation around any optimiser (Foret et al. 2021; ASAM when adaptive).

    Per micro-batch: gradient at w -> move to w + e (e = rho * g / |g|, or |w|^2 g / ||w g|| for
    ASAM) -> gradient there -> back to w. The second gradient is what the optimiser steps with,
    so with gradient accumulation each micro-batch contributes its own sharpness-aware
    gradient. Under AMP the first gradient is unscaled by hand before computing e, and a
    non-finite first gradient skips the perturbation (the scaler then handles the step).
    BatchNorm running statistics are updated on the first pass only.
    """

    def __init__(self, model: nn.Module, rho: float = 0.05, adaptive: bool = False):
        self.model, self.rho, self.adaptive = model, rho, adaptive
        self.params = [p for p in model.parameters() if p.requires_grad]

    def micro_step(
        self, closure: Callable[[], torch.Tensor], backward: Callable[[torch.Tensor], None], loss_scale: float = 1.0
    ) -> torch.Tensor:
        """``closure()`` returns the loss of this micro-batch; ``backward(loss)`` back-propagates it
        (through the scaler under AMP). Leaves the SAM gradient accumulated in ``.grad``."""
        saved = [p.grad.clone() if p.grad is not None else None for p in self.params]
        for p in self.params:
            p.grad = None
        loss = closure()
        backward(loss)
        originals = self._perturb(loss_scale)
        for p in self.params:
            p.grad = None
        with _frozen_bn_stats(self.model):
            backward(closure())
        with torch.no_grad():  # back to w exactly (w + e - e is not exact in floating point)
            for p, w in zip(self.params, originals):
                if w is not None:
                    p.copy_(w)
        for p, g in zip(self.params, saved):
            if g is not None:
                p.grad = g if p.grad is None else p.grad.add_(g)
        return loss

    @torch.no_grad()
    def _perturb(self, loss_scale: float) -> list[torch.Tensor | None]:
        """Move each weight to w + e; return the original weights (None where nothing moved)."""
        grads = [(p.grad / loss_scale if p.grad is not None else None) for p in self.params]
        scaled = [g * p.abs() if (self.adaptive and g is not None) else g for p, g in zip(self.params, grads)]
        norms = [s.norm(2) for s in scaled if s is not None]
        if not norms:
            return [None] * len(self.params)
        norm = torch.stack(norms).norm(2)
        if not torch.isfinite(norm) or norm == 0:
            return [None] * len(self.params)
        originals = []
        for p, g in zip(self.params, grads):
            if g is None:
                originals.append(None)
                continue
            originals.append(p.detach().clone())
            p.add_(g * (p.pow(2) if self.adaptive else 1.0) * (self.rho / (norm + 1e-12)))
        return originals


class _frozen_bn_stats:
    """Context: BatchNorm layers normalise with batch statistics but do not update running ones."""

    def __init__(self, model: nn.Module):
        self.bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def __enter__(self):
        self.saved = [m.momentum for m in self.bns]
        for m in self.bns:
            m.momentum = 0.0

    def __exit__(self, *exc):
        for m, mom in zip(self.bns, self.saved):
            m.momentum = mom


# --------------------------------------------------------------------------- EMA
class ModelEMA:
    """EMA of parameters *and* buffers (BN statistics) with YOLOv5's ramped decay.

    The decay is computed once per update on the host (``updates`` is a Python int), and all
    floating tensors move in one ``_foreach_lerp_``: no device synchronisation per tensor. The
    first update copies the model; update k > 1 uses ``decay * (1 - exp(-(k - 1) / tau))``.
    """

    def __init__(self, model: nn.Module, decay: float, tau: float, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates

    def _pairs(self, model: nn.Module):
        own = list(self.module.parameters()) + list(self.module.buffers())
        src = list(model.parameters()) + list(model.buffers())
        return own, src

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        own, src = self._pairs(model)
        weight = 1.0 if self.updates == 0 else 1 - self.decay * (1 - math.exp(-self.updates / self.tau))
        floats = [(a, b.detach()) for a, b in zip(own, src) if a.is_floating_point()]
        if floats:
            torch._foreach_lerp_([a for a, _ in floats], [b for _, b in floats], weight)
        for a, b in zip(own, src):
            if not a.is_floating_point():
                a.copy_(b)
        self.updates += 1
