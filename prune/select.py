"""Channel selection: one global threshold on BatchNorm |gamma| across all prunable layers.

Channels coupled by a residual addition or a concatenation are decided together (their
importance is the mean |gamma| over the coupled BatchNorms, as Torch-Pruning groups them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from detect.errors import UsageError


@dataclass
class LayerPlan:
    name: str
    total: int
    keep: list[int]  # channel indices kept
    clamped: bool = False  # the threshold wanted fewer than --min-keep


def top_channels(scores: torch.Tensor, n: int) -> list[int]:
    """The indices of the ``n`` highest-scoring channels, in channel order."""
    return sorted(scores.argsort(descending=True)[:n].tolist())


def global_threshold(scores: list[torch.Tensor], ratio: float | None, threshold: float | None) -> float:
    """The |gamma| below (or at) which channels go: given directly, or the ``ratio`` quantile."""
    if threshold is not None:
        return float(threshold)
    if ratio is None or not 0 < ratio < 1:
        raise UsageError(f"--ratio must be in (0, 1), got {ratio}")
    allv = torch.cat([s.flatten() for s in scores]).sort().values
    k = min(len(allv) - 1, max(0, int(ratio * len(allv)) - 1))
    return float(allv[k])


def plan_layer(name: str, scores: torch.Tensor, thr: float, min_keep: float, round_to: int) -> LayerPlan:
    total = len(scores)
    keep = (scores > thr).nonzero().flatten()
    n = len(keep)
    floor = math.ceil(min_keep * total)
    clamped = n < floor
    if n == 0 and floor == 0:
        raise UsageError(
            f"the threshold {thr:.4g} would remove every channel of {name}; raise --min-keep above 0 "
            "or lower the ratio/threshold"
        )
    n = max(n, floor, 1)
    if round_to > 1:
        n = min(total, math.ceil(n / round_to) * round_to)
    return LayerPlan(name, total, top_channels(scores, n), clamped)


def uniform_plan(name: str, scores: torch.Tensor, share: float, round_to: int = 1, original: int | None = None) -> LayerPlan:
    """Keep the ``1 - share`` highest-scoring channels of the layer (at least one; rounded up to ``round_to``).

    With ``original`` (the layer's unpruned width) the share is of that width: iterative steps then land on
    exactly the widths a one-shot prune to the same share keeps, instead of rounding up at every step.
    """
    total = len(scores)
    n = min(total, max(1, math.ceil((1 - share) * (original or total))))
    if round_to > 1:
        n = min(total, math.ceil(n / round_to) * round_to)
    return LayerPlan(name, total, top_channels(scores, n))


def step_share(target: float, steps: int) -> float:
    """The share removed per step so that ``steps`` equal geometric steps remove ``target`` in all."""
    return 1 - (1 - target) ** (1 / steps)


def looks_sparsity_trained(summary: dict) -> bool:
    """After L1 sparsity training a large share of |gamma| sits near zero; ordinary training leaves few."""
    return summary["share_below_0.01"] >= 0.2
