"""Stochastic weight averaging (Izmailov et al. 2018) over the last ``swa_epochs`` epochs.

The training weights at the end of each of those epochs are averaged with
``torch.optim.swa_utils.AveragedModel``; at the end the average's BN statistics are recomputed
over one epoch of training batches (they are not the average of the statistics), and it is
evaluated beside the EMA. If it scores better it becomes best.pt. The average travels in
last.pt, so a resumed run continues it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from detect.train.precise_bn import recompute_bn_stats


class SWA:
    def __init__(self, model: nn.Module, epochs: int, total_epochs: int):
        self.first_epoch = max(total_epochs - epochs, 0)
        self.average = AveragedModel(model)  # equal weights: the default average

    def state_dict(self) -> dict:
        return self.average.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.average.load_state_dict(state)

    def after_epoch(self, model: nn.Module, epoch: int) -> None:
        if epoch >= self.first_epoch:
            self.average.update_parameters(model)

    @torch.no_grad()
    def finish(self, run) -> nn.Module:
        """The averaged model with recomputed BN statistics, in eval mode."""
        module = self.average.module
        recompute_bn_stats(module, iter(run.data.loader), run.data.batches, run.device, run.world)
        return module.eval()
