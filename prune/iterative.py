"""Iterative pruning: K equal geometric steps, each followed by a short recovery through ``fit()``.

After step k, ``1 - (1 - R)^(k/K)`` of the *unpruned* prunable channels are gone (equal geometric
steps; with ``--gflops G``, the share that leaves ``G^(k/K)`` of the GFLOPs), so step K lands on the
widths a one-shot prune by R keeps — planning each step on what remains instead rounded up to
``--round-to`` at every step and stopped short of the target (0.78x GFLOPs for a 0.6x target in three
steps). After each step the pruned model is evaluated, recovered for ``step_epochs`` (distilled from
the *unpruned* model with ``--distill``) and evaluated again; when mAP50-95 falls more than
``max_drop`` below the start, the loop stops and keeps the last good model (between steps only: a
single step's recovery is the final fine-tuning). Works from weights that were never
sparsity-trained (Torch-Pruning's YOLOv8 recipe does the same).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

from detect.model import count_gflops
from detect.weights import atomic_save, load_model, make_checkpoint
from prune.surgery import group_widths, plan, ratio_for_gflops, remove


@dataclass
class StepRecord:
    step: int
    share: float  # of the unpruned prunable channels removed once this step is done
    gflops_ratio: float  # to the unpruned model, at the report shape
    map50_95_pruned: float  # right after the surgery
    map50_95_recovered: float  # after the recovery epochs (= pruned when there are none)
    weights: str


@dataclass
class StepsResult:
    model: object  # the final model (the start when the first step already fell too far)
    path: Path  # its checkpoint
    steps: list[dict]  # each StepRecord as a dict
    stopped: str | None  # why the loop stopped early, or None


def run_steps(model, names: list[str], config, evaluate, calib_for, finetune,
              importance_for=lambda m: None) -> StepsResult:
    """K steps of surgery + recovery.

    ``evaluate(model) -> metrics``; ``calib_for(model) -> image batch | None``;
    ``finetune(checkpoint, epochs, out, share) -> (model, metrics)``; ``importance_for(model) -> scores | None``
    (the ``taylor`` strategy's, estimated anew on the model each step starts from).
    """
    start = evaluate(model)["map50_95"]
    gflops0 = count_gflops(model, config.report_shape)
    widths = group_widths(model)
    current, current_path, records, stopped, before = model, config.weights, [], None, 0.0
    for k in range(1, config.steps + 1):
        scores = importance_for(current)
        removed = step_target(current, config, k, widths, gflops0, scores)
        share = None if removed is None else 1 - (1 - removed) / (1 - before)  # of what this step starts from
        plans, _ = plan(current, config.strategy, removed, config.threshold, config.min_keep, config.round_to,
                        original=widths, scores=scores)
        pruned = remove(copy.deepcopy(current), plans, calib_for(current), compensation=config.compensation,
                         match_bn=config.match_bn)
        folder = config.out / f"step{k}" if config.steps > 1 else config.out
        untuned = folder / "pruned_untuned.pt"
        atomic_save(make_checkpoint(pruned, names, meta={"pruned": {"step": k, "removed": removed}}), untuned)
        after = evaluate(pruned)["map50_95"]
        recovered, path = after, untuned
        if config.step_epochs > 0 and config.steps > 1:
            pruned, metrics, path = finetune(untuned, config.step_epochs, folder / "recover", share)
            recovered = metrics["map50_95"]
        rec = StepRecord(k, removed or 0.0, count_gflops(pruned, config.report_shape) / gflops0, after, recovered,
                         str(path))
        print(f"step {k}/{config.steps}: GFLOPs {rec.gflops_ratio:.2f}x; mAP50-95 {start:.4f} -> {after:.4f} "
              f"after pruning -> {recovered:.4f} after recovery")
        if config.max_drop is not None and config.steps > 1 and start - recovered > config.max_drop:
            kept = f"step {k - 1}'s model" if k > 1 else "the unpruned model"
            stopped = (f"step {k} fell {start - recovered:.4f} below the start ({start:.4f}), more than --max-drop "
                       f"{config.max_drop}; kept {kept} ({current_path})")
            print(f"stopping: {stopped}")
            records.append(rec)
            break
        current, current_path, before = pruned, Path(path), removed or 0.0
        records.append(rec)
    return StepsResult(current, current_path, [asdict(r) for r in records], stopped)


def step_target(model, config, k: int, widths: dict[str, int], gflops0: float, scores=None) -> float | None:
    """The share of the unpruned channels removed once step k is done (None: a |gamma| threshold).

    With ``--gflops G`` step k is planned on the model as it is then to leave ``G^(k/K)`` of the unpruned
    GFLOPs: a global |gamma| criterion picks other layers after each recovery, so a fixed channel share
    missed the budget (0.69x for a 0.6x target in three steps, docs/BENCHMARKS.md).
    """
    if config.gflops is not None:
        target = config.gflops ** (k / config.steps)
        return ratio_for_gflops(model, config.strategy, target, config.report_shape, config.min_keep,
                                config.round_to, original=widths, base=gflops0, at_most=config.gflops_at_most,
                                scores=scores)
    return None if config.ratio is None else 1 - (1 - config.ratio) ** (k / config.steps)


def reload(path: Path):
    model, _ = load_model(path, "cpu", fuse=False)
    return model


def layer_table(model, pruned) -> list[dict]:
    """Output channels of every Conv block before and after (the rebuilt model keeps the layer names)."""

    rows = []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and name.endswith(".conv"):
            rows.append({"name": name.removesuffix(".conv"), "kept": pruned.get_submodule(name).out_channels,
                         "total": m.out_channels})
    return rows
