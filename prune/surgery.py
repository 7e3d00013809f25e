"""Real channel removal with Torch-Pruning's dependency graph, then a rebuild from the channel spec.

Torch-Pruning follows every coupling — C3 residual additions, neck concatenations, SPPF's
pooled copies, the Detect inputs — so shapes stay consistent; the Detect output convolutions
are never pruned. The pruned network is then rebuilt as a plain ``YOLOv5`` from its new
channel spec and state dict: the result loads everywhere without Torch-Pruning or pickle.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from detect.errors import UsageError
from detect.groups import dependency_graph, prunable_groups
from detect.model import Conv, YOLOv5, channel_spec, count_gflops
from prune.reconstruct import batchnorm_of, match_batch_statistics, reconstruct
from prune.select import LayerPlan, global_threshold, plan_layer, uniform_plan


def group_scores(model: YOLOv5, example: torch.Tensor):
    """[(root layer name, root conv, per-channel mean |gamma| over the coupled BatchNorms)]."""
    return [(g.name, g.root, g.scores()) for g in prunable_groups(model, tuple(example.shape[-2:]))]


def group_widths(model: YOLOv5) -> dict[str, int]:
    """Prunable group name -> its root's width (record it before the first step: ``plan(original=...)``)."""
    return {g.name: g.size for g in prunable_groups(model)}


def filter_l1_scores(model: YOLOv5, example: torch.Tensor):
    """[(root layer name, root conv, per-channel L1 norm of the root's filters)]: the uniform control's criterion."""
    return [(g.name, g.root, g.root.weight.detach().abs().sum((1, 2, 3)).cpu()) for g in
            prunable_groups(model, tuple(example.shape[-2:]))]


def relative_l1_scores(model: YOLOv5, example: torch.Tensor):
    """[(root layer name, root conv, filter L1 norms / their layer's mean)]: the ``l1`` strategy's criterion.

    Filter norms, not |gamma|, pick the channels: at the same per-layer widths, keeping the largest filters
    left 0.110 mAP50-95 right after pruning where keeping the largest |gamma| left 0.024 (weights not
    sparsity-trained, docs/BENCHMARKS.md, slimming round 7). Dividing by the layer's mean lets one global
    threshold compare layers whose norms differ in scale, so widths follow where the filters are weak
    instead of one share everywhere — which, with ``round_to=16``, gives widths CPU kernels run at full speed.
    """
    return _relative(filter_l1_scores(model, example))


def relative_taylor_scores(model: YOLOv5, example: torch.Tensor, scores: dict[str, torch.Tensor] | None):
    """[(root layer name, root conv, root-mean-square Taylor loss change / its layer's mean)]: the ``taylor``
    strategy's criterion (``prune.importance.taylor_scores``), spread over layers as ``l1`` spreads filter norms.

    The square root brings the squared loss changes back to loss units; relative to each layer's mean, one
    threshold then cuts where a layer's channels matter least to the task (raw, it emptied the cheap deep
    layers first: 0.042 right after a 0.6x prune against 0.086, docs/BENCHMARKS.md, slimming round 13).
    """
    if scores is None:
        raise UsageError("--strategy taylor needs importance scores from labelled training images "
                         "(prune.importance.taylor_scores)")
    groups = prunable_groups(model, tuple(example.shape[-2:]))
    return _relative([(g.name, g.root, scores[g.name].sqrt()) for g in groups])


def _relative(groups):
    return [(name, conv, s / s.mean().clamp_min(1e-12)) for name, conv, s in groups]


def plan(model: YOLOv5, strategy: str, ratio: float | None, threshold: float | None = None, min_keep: float = 0.1,
         round_to: int = 1, shape: tuple[int, int] = (64, 64),
         original: dict[str, int] | None = None,
         scores: dict[str, torch.Tensor] | None = None) -> tuple[list[LayerPlan], float]:
    """Which channels of each group to keep: ``gamma`` (one global |gamma| threshold, network slimming),
    ``uniform`` (the same share of every group, by filter L1 norm: the control slimming must beat),
    ``l1`` (one global threshold on filter L1 norms relative to their layer's mean, ``relative_l1_scores``) or
    ``taylor`` (the same on the task's loss change, ``relative_taylor_scores``; ``scores`` from
    ``prune.importance.taylor_scores`` on this model).

    ``original`` (group name -> unpruned width, ``group_widths``) makes ``ratio`` the share of the
    *unpruned* channels removed once this plan is applied: how iterative steps reach their target.
    """
    example = torch.zeros(1, 3, *shape)
    if strategy == "uniform":
        if ratio is None:
            raise UsageError("--strategy uniform needs --ratio (the share removed from every layer)")
        groups = filter_l1_scores(model, example)
        widths = original or {}
        return [uniform_plan(name, s, ratio, round_to, widths.get(name)) for name, _, s in groups], float("nan")
    if strategy in ("l1", "taylor") and ratio is None:
        raise UsageError(f"--strategy {strategy} needs --ratio or --gflops (its scores are not |gamma|: no --threshold)")
    if strategy == "taylor":
        groups = relative_taylor_scores(model, example, scores)
    else:
        groups = relative_l1_scores(model, example) if strategy == "l1" else group_scores(model, example)
    if original and ratio is not None:  # the share of what remains that brings the total to ``ratio``
        remaining = sum(len(s) for _, _, s in groups)
        ratio = min(0.95, max(1e-3, 1 - (1 - ratio) * sum(original.values()) / remaining))
    thr = global_threshold([s for _, _, s in groups], ratio, threshold)
    return [plan_layer(name, s, thr, min_keep, round_to) for name, _, s in groups], thr


COMPENSATIONS = ("reconstruct", "mean")


def remove(model: YOLOv5, plans: list[LayerPlan], calib: torch.Tensor | None = None,
           shape: tuple[int, int] = (64, 64), compensation: str = "mean", match_bn: bool = False) -> YOLOv5:
    """Remove the channels ``plans`` drop (``model`` is modified, then rebuilt as a plain YOLOv5).

    With ``calib`` (a batch of real images in [0, 1]) the loss is compensated: ``mean`` folds each
    removed channel's mean activation into the layers that consumed it (``_fold_removed_means``);
    ``reconstruct`` refits every layer by least squares to the unpruned outputs (``prune.reconstruct``).
    ``match_bn``: then every BatchNorm is re-expressed around its input's new statistics on ``calib``
    (``match_batch_statistics``: the same eval function; training-mode BatchNorm no longer rescales the
    compensated layers). It helps only where ``calib`` looks like the training batches (docs/BENCHMARKS.md).
    """
    original = copy.deepcopy(model).eval() if calib is not None and compensation == "reconstruct" else None
    tp, dg, _ = dependency_graph(model.eval(), torch.zeros(1, 3, *shape))
    names = {m: n.removesuffix(".conv") for n, m in model.named_modules()}
    roots = {name: conv for conv, name in names.items() if isinstance(conv, nn.Conv2d)}
    kept_out: dict[str, list[int]] = {}
    for p in plans:
        drop = sorted(set(range(p.total)) - set(p.keep))
        if drop:
            group = dg.get_pruning_group(roots[p.name], tp.prune_conv_out_channels, drop)
            if calib is not None and original is None:
                _fold_removed_means(model, group, dg, calib)
            _track_kept_outputs(group, dg, names, kept_out)
            group.prune()
    fresh = rebuild(model)
    if original is not None:
        reconstruct(original, fresh, kept_out, calib)
    if calib is not None and match_bn:  # training-mode BatchNorm starts from the network that was validated
        match_batch_statistics(fresh, calib)
    return fresh


def _track_kept_outputs(group, dg, names: dict, kept_out: dict[str, list[int]]) -> None:
    """Update, per Conv block, which of its original output channels survive this group's removal."""
    for dep, idxs in group:
        mod = dep.target.module
        if isinstance(mod, nn.Conv2d) and dg.is_out_channel_pruning_fn(dep.handler):
            current = kept_out.setdefault(names[mod], list(range(mod.out_channels)))
            gone = {int(getattr(i, "idx", i)) for i in idxs}
            kept_out[names[mod]] = [c for i, c in enumerate(current) if i not in gone]


def prune(
    model: YOLOv5,
    ratio: float | None,
    threshold: float | None,
    min_keep: float = 0.1,
    round_to: int = 1,
    shape: tuple[int, int] = (64, 64),
    calib: torch.Tensor | None = None,
    strategy: str = "gamma",
    compensation: str = "mean",
) -> tuple[YOLOv5, list[LayerPlan], float]:
    """Plan and remove in one call; returns (pruned model, per-layer plan, threshold)."""
    plans, thr = plan(model, strategy, ratio, threshold, min_keep, round_to, shape)
    return remove(model, plans, calib, shape, compensation), plans, thr


@torch.no_grad()
def _fold_removed_means(model: YOLOv5, group, dg, calib: torch.Tensor) -> None:
    """Move each removed input channel's mean contribution into its consumer's BN mean or bias.

    A channel whose BN gamma is ~0 outputs the constant act(beta), not zero: dropping it
    shifts every consumer by W[:, c] * act(beta) (the slimming paper's surgery ignores this;
    on YOLOv5n dropping only 2% of channels that way takes mAP to 0). Subtracting the shift
    from the consumer's BN running mean (or adding it to a Detect conv's bias) keeps the
    network's function: exactly for constant channels (up to zero-padding at the borders),
    as the best constant otherwise. The means come from ``calib`` through the current model.
    """
    consumers: dict[nn.Conv2d, list[int]] = {}
    for dep, idxs in group:
        mod = dep.target.module
        if isinstance(mod, nn.Conv2d) and not dg.is_out_channel_pruning_fn(dep.handler):
            consumers[mod] = [getattr(i, "idx", i) for i in idxs]
    if not consumers:
        return
    means: dict[nn.Conv2d, torch.Tensor] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, inp: means.__setitem__(m, inp[0].mean((0, 2, 3)))) for m in consumers
    ]
    try:
        model.eval()(calib, raw=True)
    finally:
        for h in hooks:
            h.remove()
    bn_of = batchnorm_of(model)
    for conv, idx in consumers.items():
        if conv.groups != 1:
            continue  # depthwise consumers lose the channel with its input; nothing to fold
        shift = conv.weight[:, idx].sum((2, 3)) @ means[conv][idx]
        if conv in bn_of:
            bn_of[conv].running_mean.sub_(shift)
        elif conv.bias is not None:
            conv.bias.add_(shift)


def rebuild(model: YOLOv5) -> YOLOv5:
    """A fresh YOLOv5 built from the pruned module's channel spec, carrying its weights."""
    arch = {**model.arch, "channels": channel_spec(model)}
    fresh = YOLOv5(arch)
    fresh.load_state_dict(model.state_dict())
    return fresh


def prunable_bn_gammas(model: nn.Module) -> torch.Tensor:
    return torch.cat(
        [m.bn.weight.detach().flatten() for m in model.modules() if isinstance(m, Conv) and hasattr(m, "bn")]
    )


def ratio_for_gflops(model: YOLOv5, strategy: str, target: float, shape: tuple[int, int] = (384, 640),
                     min_keep: float = 0.1, round_to: int = 1, tol: float = 0.01,
                     original: dict[str, int] | None = None, base: float | None = None,
                     at_most: bool = False, scores: dict[str, torch.Tensor] | None = None) -> float:
    """The channel ratio whose prune leaves ``target`` x the GFLOPs at ``shape`` (bisection on copies).

    ``base``: the GFLOPs ``target`` is a share of (default: this model's); ``original`` and ``scores``: as in
    ``plan`` (with ``original`` the ratio is a share of the unpruned widths: an iterative step's plan).
    The result lands in [target - tol, target] where the rounding to ``round_to`` allows. Where it jumps
    over that band (uniform at --round-to 8 goes from 0.601 to 0.520 of yolov5n's GFLOPs): the closest
    ratio found within ``tol`` above the target, or with ``at_most`` (a budget that must not be exceeded)
    the closest found under it (``hi``: the bisection's last point at or below the target).
    """

    base = base or count_gflops(model, shape)
    lo, hi, above = 0.0, 0.95, None  # above: (GFLOPs ratio, channel ratio) just over the target
    for _ in range(12):
        mid = (lo + hi) / 2
        plans, _ = plan(model, strategy, mid, None, min_keep, round_to, original=original, scores=scores)
        ratio = count_gflops(remove(copy.deepcopy(model), plans), shape) / base
        if target - tol <= ratio <= target:
            return mid
        if target < ratio <= target + tol and (above is None or ratio < above[0]):
            above = (ratio, mid)
        lo, hi = (mid, hi) if ratio > target else (lo, mid)
    return above[1] if above and not at_most else hi
