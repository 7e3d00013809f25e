"""One training micro-batch, and every ``accumulate`` of them one optimiser step.

The order within a step is the one that keeps each trick correct under AMP:
forward (autocast) -> loss (+ distillation) -> backward through the scaler (SAM: two passes)
-> ... accumulate ... -> unscale -> gradient hooks -> optimiser step -> scaler update -> EMA.
Micro-batches that do not step skip DDP's gradient all-reduce (``no_sync``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from detect.hyp import Hyp, load_hyp
from detect.loss import YOLOLoss, distillation_loss
from detect.optim import SAM, ModelEMA


class TrainStep:
    def __init__(
        self,
        net: nn.Module,  # what runs forward: the model, or its DDP wrapper
        model: nn.Module,  # the bare model (hooks and EMA see this)
        criterion: YOLOLoss,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        ema: ModelEMA,
        hooks: Sequence[Callable[[nn.Module, float], None]] = (),
        amp_dtype: torch.dtype | None = None,
        teacher: nn.Module | None = None,
        hyp: Hyp | None = None,
        world: int = 1,
    ):
        self.net, self.model, self.criterion = net, model, criterion
        self.optimizer, self.scaler, self.ema, self.hooks = optimizer, scaler, ema, list(hooks)
        self.amp_dtype, self.teacher, self.hyp, self.world = amp_dtype, teacher, hyp or load_hyp(), world
        self.sam = SAM(net, self.hyp.sam_rho, self.hyp.sam_adaptive) if self.hyp.sam else None
        self.device_type = next(model.parameters()).device.type

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss to back-propagate, its named terms detached: box, obj, cls, and distill with a teacher; each
        per image and weighted by its gain, so they add up to the loss over the batch size)."""
        with torch.autocast(self.device_type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            preds = self.net(x)
            loss, terms = self.criterion(preds, targets)
            if self.teacher is not None:
                with torch.no_grad():
                    t_maps = self.teacher(x, raw=True)
                distill = distillation_loss(preds, t_maps, self.hyp)
                loss = loss + distill * len(x)
                terms["distill"] = distill.detach().reshape(())
        return loss * self.world, terms  # DDP averages gradients; YOLOv5's loss is a per-batch sum

    def backward(self, x: torch.Tensor, targets: torch.Tensor, will_step: bool) -> tuple[torch.Tensor, dict]:
        """Forward and backward of one micro-batch; gradients accumulate in ``.grad``."""
        sync = will_step or self.world == 1 or not hasattr(self.net, "no_sync")
        with contextlib.nullcontext() if sync else self.net.no_sync():
            if self.sam is None:
                loss, items = self.loss(x, targets)
                self.scaler.scale(loss).backward()
                return loss.detach(), items
            box = {}

            def closure():
                loss, box["items"] = self.loss(x, targets)
                return loss

            scale = self.scaler.get_scale() if self.scaler.is_enabled() else 1.0
            loss = self.sam.micro_step(closure, lambda v: self.scaler.scale(v).backward(), scale)
            return loss.detach(), box["items"]

    def step(self, progress: float) -> None:
        """Unscale, run the gradient hooks, step, update the scaler and the EMA."""
        self.scaler.unscale_(self.optimizer)
        for hook in self.hooks:  # after unscale: a term added to scaled gradients would be divided by 2^16
            hook(self.model, progress)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.ema.update(self.model)
