"""Real channel removal with Torch-Pruning's dependency graph, then a rebuild from the channel spec.

Torch-Pruning follows every coupling — C3 residual additions, neck concatenations, SPPF's
pooled copies, the Detect inputs — so shapes stay consistent; the Detect output convolutions
are never pruned. The pruned network is then rebuilt as a plain ``YOLOv5`` from its new
channel spec and state dict: the result loads everywhere without Torch-Pruning or pickle.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from detect.model import Conv, YOLOv5, channel_spec
from prune.select import LayerPlan, global_threshold, plan_layer


def _dependency_graph(model: YOLOv5, example: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torch_pruning as tp

    # The Detect output convolutions stay in the graph (their input channels must follow the
    # pruning) and are only excluded as roots: passed to build_dependency as ignored, they are
    # traced as element-wise ops and index mapping runs on through the head's reshape.
    ignored = list(model.detect.m)
    dg = tp.DependencyGraph().build_dependency(
        model, example_inputs=example, forward_fn=lambda m, x: m(x, raw=True), verbose=False
    )
    return tp, dg, ignored


def group_scores(model: YOLOv5, example: torch.Tensor):
    """[(root conv name, root conv, per-channel mean |gamma| over the coupled BatchNorms)]."""
    model.eval()
    tp, dg, ignored = _dependency_graph(model, example)
    importance = tp.importance.BNScaleImportance(group_reduction="mean", normalizer=None)
    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d]):
        root = group[0].dep.target.module
        scores = importance(group)
        if scores is not None:
            out.append((names[root].removesuffix(".conv"), root, scores.detach().cpu()))
    return out


def prune(
    model: YOLOv5,
    ratio: float | None,
    threshold: float | None,
    min_keep: float = 0.1,
    round_to: int = 1,
    shape: tuple[int, int] = (64, 64),
) -> tuple[YOLOv5, list[LayerPlan], float]:
    """Prune ``model`` (modified in place, then rebuilt); returns (pruned model, per-layer plan, threshold)."""
    example = torch.zeros(1, 3, *shape)
    groups = group_scores(model, example)
    thr = global_threshold([s for _, _, s in groups], ratio, threshold)
    plans = [plan_layer(name, s, thr, min_keep, round_to) for name, _, s in groups]
    tp, dg, _ = _dependency_graph(model, example)
    for (_, root, _), plan in zip(groups, plans):
        drop = sorted(set(range(plan.total)) - set(plan.keep))
        if drop:
            dg.get_pruning_group(root, tp.prune_conv_out_channels, drop).prune()
    return rebuild(model), plans, thr


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
