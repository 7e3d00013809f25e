"""The prunable groups of a YOLOv5: which BatchNorm channels the surgery removes together.

A C3's residual sums, the neck's concatenations and SPPF's pooled copies couple channels of
several layers: removing channel r of a group removes it from every coupled BatchNorm at
once. Torch-Pruning's dependency graph finds these couplings; this module turns them into
plain index tensors (BN module, its channel index, the group's channel index) so the
training hook and the separation figures can use them without Torch-Pruning at step time.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class PrunableGroup:
    name: str  # the root layer (``model.3``)
    root: nn.Conv2d
    size: int  # channels of the root
    members: list[tuple[nn.Module, torch.Tensor, torch.Tensor]]  # (BatchNorm, its channel idx, root channel idx)

    def scores(self) -> torch.Tensor:
        """Per root channel: mean |gamma| over the coupled BatchNorms (the pruning criterion)."""
        total = torch.zeros(self.size)
        count = torch.zeros(self.size)
        for bn, idx, ridx in self.members:
            total.index_add_(0, ridx, bn.weight.detach().abs().float().cpu()[idx])
            count.index_add_(0, ridx, torch.ones(len(ridx)))
        return total / count.clamp_min(1)


def dependency_graph(model: nn.Module, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch_pruning as tp  # heavy, and needed only when a model is pruned or group-regularised

    # The Detect output convolutions stay in the graph (their inputs must follow the pruning)
    # and are only excluded as roots.
    dg = tp.DependencyGraph().build_dependency(
        model, example_inputs=example, forward_fn=lambda m, x: m(x, raw=True), verbose=False
    )
    return tp, dg, list(model.detect.m)


def prunable_groups(model: nn.Module, shape: tuple[int, int] = (64, 64)) -> list[PrunableGroup]:
    """The groups of ``model``, referring to ``model``'s own modules (traced on a copy, so nothing
    of ``model`` is touched: no hooks, no BN statistics updated)."""
    twin = copy.deepcopy(model).float().cpu().eval()
    with torch.enable_grad():  # Torch-Pruning traces through autograd; callers may be inside no_grad
        _, dg, ignored = dependency_graph(twin, torch.zeros(1, 3, *shape))
    name_of = {m: n for n, m in twin.named_modules()}
    groups = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        members = []
        for item in group:
            mod = item.dep.target.module
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                idx = torch.tensor([int(i) for i in item.idxs], dtype=torch.long)
                ridx = torch.tensor([int(i) for i in item.root_idxs], dtype=torch.long)
                members.append((model.get_submodule(name_of[mod]), idx, ridx))
        if members:
            name = name_of[root].removesuffix(".conv")
            groups.append(PrunableGroup(name, model.get_submodule(name_of[root]), root.out_channels, members))
    return groups


def separation(groups: list[PrunableGroup], ratio: float) -> dict:
    """How far sparsity training has separated what a global ``ratio`` prune would remove from what it keeps.

    ``group_below_0.01``: share of group channels whose score is under 0.01; ``removed_over_kept``:
    mean score of the removed side over the kept side (ordinary training ~0.4; near 0 means the
    removal costs almost nothing).
    """
    scores = torch.cat([g.scores() for g in groups]) if groups else torch.zeros(0)
    if not len(scores):
        return {"group_below_0.01": float("nan"), "removed_over_kept": float("nan")}
    ordered = scores.sort().values
    k = min(len(ordered) - 1, max(1, int(ratio * len(ordered))))
    removed, kept = ordered[:k], ordered[k:]
    return {
        "group_below_0.01": float((scores < 0.01).float().mean()),
        "removed_over_kept": float(removed.mean() / kept.mean().clamp_min(1e-12)),
    }
