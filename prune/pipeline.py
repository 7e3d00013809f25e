"""The pruning run as a library: ``run(PruneConfig) -> report``; ``python -m prune`` is its CLI.

Evaluate the model -> (sensitivity scan) -> K steps of surgery + recovery (prune.iterative) ->
fine-tune -> GFLOPs, ONNX Runtime latency and mAP before / right after pruning / after
fine-tuning -> OUT/pruned.pt, report.json, report.md (+ plots).

The fine-tuning recipe adapts to what it measures: a --finetune-hyp whose first validation falls below
COLLAPSE_SHARE of the surgery's mAP50-95 is halted and the fine-tuning starts again from the surgery's
model with the gentle recovery recipe (--hyp, recover.yaml). rewind.yaml (lr0 0.01) is the better recipe on
the synthetic set and wiped the 0.6x ccp model to 0.000 in one epoch (docs/notes/2026-12-03-real-data.md).
"""

from __future__ import annotations

import copy
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from deploy.export import export
from deploy.session_timer import time_isolated
from detect import cli
from detect.data.config import load_data_config
from detect.data.dataset import EvalDataset
from detect.data.labels import scan_split
from detect.errors import UsageError
from detect.evaluate import DEFAULT_BATCH
from detect.hyp import load_hyp
from detect.model import count_gflops, count_params
from detect.optim import bn_gamma_summary
from detect.outputs import atomic_write_bytes, ensure_writable, write_json
from detect.train import FitResult, TrainConfig, fit
from detect.train.callbacks import default_callbacks
from detect.train.config import parse_overrides
from detect.train.engine import evaluate as evaluate_model
from detect.weights import build_from_checkpoint, load_checkpoint
from prune import sensitivity
from prune.config import PruneConfig
from prune.importance import estimator, spread
from prune.iterative import StepsResult, layer_table, reload, run_steps
from prune.report import plots, write_markdown
from prune.select import looks_sparsity_trained
from prune.surgery import prunable_bn_gammas

COLLAPSE_SHARE = 0.25  # a first validation below this share of the surgery's mAP50-95: the recipe is wrong here


class CollapseGuard:
    """Halts a fine-tuning whose first epoch lost most of what the surgery kept (``floor``: mAP50-95).

    Judged after the first epoch: on that epoch's validation, or, where the run validates less often
    (the proofs keep the last epoch), on a validation of its own that chooses nothing."""

    def __init__(self, floor: float):
        self.floor, self.checked = floor, False

    def on_epoch_end(self, run, epoch: int, row: dict) -> None:
        if self.checked:
            return
        self.checked = True
        m = row["map50_95"]
        if m != m:  # NaN: the run did not validate this epoch
            cfg = run.config
            m = evaluate_model(run.opt.ema.module, run.data.val, run.data.cfg.names, cfg.val_img or cfg.img,
                               DEFAULT_BATCH, min(cfg.workers, 2), run.device)["map50_95"]
        if m < self.floor:
            run.halt(f"fine-tuning collapsed: mAP50-95 {m:.4f} after epoch {epoch + 1}, below {self.floor:.4f} "
                     f"({COLLAPSE_SHARE:.0%} of the surgery's)")


class Stopped(Exception):
    """A recovery or fine-tuning run was interrupted by a signal (``.signal``)."""

    def __init__(self, signal: int):
        super().__init__(f"interrupted by signal {signal}")
        self.signal = signal


def evaluate(model, samples, names, img: int, batch: int, workers: int, device="cpu") -> dict:
    """mAP of a fused copy of ``model`` on ``device``, without autograd."""
    device = torch.device(device)
    net = copy.deepcopy(model).float().eval().fuse().to(device)
    m = evaluate_model(net, samples, names, img, batch, workers, device)
    return {"map50": m["map50"], "map50_95": m["map50_95"]}


def finetune(c: PruneConfig, checkpoint: Path, epochs: int, out: Path, share: float | None = None,
             hyp_file: str | None = None, floor: float | None = None) -> FitResult:
    """Recovery training of a pruned checkpoint through ``fit`` (distilled from the unpruned one with --distill).

    Its warmup is 10% of its epochs at most, and none after a small step (<= 10% of the channels): the
    weights are already trained.
    """
    overrides = parse_overrides(c.set)
    hyp = load_hyp(hyp_file or c.hyp, overrides)
    if "warmup_epochs" not in overrides:  # the warmup scales with the recovery: 10% of it, none after a small step
        hyp = hyp.replace(warmup_epochs=0.0 if share is not None and share <= 0.1 else min(hyp.warmup_epochs, 0.1 * epochs))
    if "warmup_bias_lr" not in overrides:
        # trained biases start at lr0 at most, not the from-scratch warmup's 10x. Not the whole story on ccp:
        # with the cap, rewind.yaml's lr0 0.01 still took the 0.6x taylor model from 0.250 to 0.000 in its first
        # epoch (docs/notes/2026-12-03-real-data.md); recover.yaml's lr0 0.001 is the recipe there
        hyp = hyp.replace(warmup_bias_lr=min(hyp.warmup_bias_lr, hyp.lr0))
    config = TrainConfig(data=c.data, out=out, model=str(checkpoint), weights=str(checkpoint),
                         teacher=str(c.weights) if c.distill else None, img=c.img, val_img=c.val_img, epochs=epochs,
                         val_interval=c.val_interval, batch=c.batch, hyp=hyp, device=c.device, workers=c.workers, quiet=True)
    callbacks = None if floor is None else [*default_callbacks(out, False, True), CollapseGuard(floor)]
    result = fit(config, callbacks=callbacks)
    if result.stopped:
        raise Stopped(result.stopped)
    return result


def adaptive_finetune(c: PruneConfig, surgery: Path, surgery_map: float) -> tuple[FitResult, str, str | None]:
    """Fine-tune with --finetune-hyp; where it collapses, again from ``surgery`` with the gentle --hyp.

    Returns the run, the recipe that produced it and the collapse message (None when there was none)."""
    result = finetune(c, surgery, c.finetune_epochs, c.out / "finetune", hyp_file=c.finetune_hyp,
                      floor=COLLAPSE_SHARE * surgery_map if c.finetune_hyp != c.hyp else None)
    if not result.halted:
        return result, c.finetune_hyp, None
    left = max(1, c.finetune_epochs - 1)  # the guard spent one: the run stays within the epochs it was given
    print(f"{result.halted}; fine-tuning again from the surgery's model with {c.hyp} for {left} epochs", flush=True)
    return finetune(c, surgery, left, c.out / "finetune_gentle", hyp_file=c.hyp), c.hyp, result.halted


def onnx_latency_rounds(ckpts: dict[str, Path], out: Path, shape: tuple[int, int], iters: int,
                        rounds: int = 5, runtimes: tuple[str, ...] = ("ort",)) -> dict[str, dict[str, list[float]]]:
    """ONNX Runtime CPU latency (ms, batch 1, ``session.run`` only) of each checkpoint exported at ``shape``:
    ``rounds`` rounds of ``iters / rounds`` runs of every model, each run of runs in a fresh process of its own
    (``deploy.session_timer``); per runtime, the median of each round, per model, in round order. ``runtimes``:
    "ort" (all cores) and/or "ort-1thread" (one thread: what an image costs a deployment running one process
    per core), each timed on the same exported files.

    Timed one after the other, a slow spell of a shared machine lands on one model (the same baseline read
    15.7 and 23.5 ms in two proof runs); timed interleaved in one process, a model's ratio to the baseline
    moved with the order the sessions were created (0.64 or 1.00 for the same file, slimming round 7).
    """

    rounds = max(1, min(rounds, iters))  # never more rounds than runs (a tiny --latency-iters: fewer processes)
    files = {name: export(path, out / f"onnx_{name}", shape).fp32 for name, path in ckpts.items()}
    timed = {}
    for runtime in runtimes:
        times = time_isolated(files, (1, 3, *shape), rounds, max(1, iters // rounds), warmup=5,
                              runtimes=dict.fromkeys(files, runtime))
        timed[runtime] = {name: [1000 * statistics.median(r) for r in per_round] for name, per_round in times.items()}
    return timed


def onnx_latencies(ckpts: dict[str, Path], out: Path, shape: tuple[int, int], iters: int,
                   rounds: int = 5, runtimes: tuple[str, ...] = ("ort",)) -> dict[str, dict[str, float]]:
    """``onnx_latency_rounds`` summed up: per runtime, the median of each model's round medians (ms)."""
    timed = onnx_latency_rounds(ckpts, out, shape, iters, rounds, runtimes)
    return {runtime: {name: statistics.median(ms) for name, ms in per.items()} for runtime, per in timed.items()}


def calibration_batch(cfg, img: int, n: int) -> torch.Tensor | None:
    """``n`` training images spread over the split, letterboxed square to ``img``, in [0, 1]."""
    if n <= 0:
        return None

    samples, _ = scan_split(cfg, "train" if "train" in cfg.splits else "val", progress=False)
    picked = spread(samples, n)
    images = [EvalDataset(picked, img, len(picked), rect=False)[i][0] for i in range(len(picked))]
    return torch.stack(images).float().div_(255)


def importance_estimator(c: PruneConfig, cfg):
    """``model -> scores`` for the taylor strategy (on --taylor-images labelled training images), else None."""
    if c.strategy != "taylor":
        return lambda model: None
    return estimator(cfg, c.img, load_hyp(c.hyp, parse_overrides(c.set)), c.taylor_images, c.batch)


def run(c: PruneConfig) -> dict:
    device = cli.select_device(c.device)
    ensure_writable(c.out)
    cfg = load_data_config(c.data)
    ckpt = load_checkpoint(c.weights)
    if len(ckpt["names"]) != cfg.nc:
        raise UsageError(f"{c.weights} has {len(ckpt['names'])} classes but {c.data} has {cfg.nc}; prune a model "
                         "trained on this data")
    model = build_from_checkpoint(ckpt, c.weights).float().eval()
    samples, _ = scan_split(cfg, "val" if "val" in cfg.splits else "train", progress=False)
    gammas = prunable_bn_gammas(model)
    gsum = bn_gamma_summary(gammas)
    if not looks_sparsity_trained(gsum) and c.strategy == "gamma":
        print(f"warning: {c.weights} does not look sparsity-trained: only {gsum['share_below_0.01']:.0%} of BatchNorm "
              f"|gamma| are below 0.01 (median {gsum['median']:.3f}); expect a drop before recovery (make "
              "train-sparse first, or use --steps with --step-epochs)", file=sys.stderr)

    def score(m):
        # at the trainer's validation batch: rectangular batches pad differently at other sizes, and the
        # report compares this figure with the recovery's own validation
        return evaluate(m, samples, cfg.names, c.val_img or c.img, DEFAULT_BATCH, c.workers, device)

    calib = calibration_batch(cfg, c.img, c.calib_images)
    before = score(model)
    if c.sensitivity:
        sensitivity.write(c.out, sensitivity.scan(model, score, calib, c.sensitivity_share, c.report_shape),
                          c.sensitivity_share)

    def recover(path, epochs, out, share):
        result = finetune(c, path, epochs, out, share)
        return reload(result.best), result.summary, result.best

    stepped = run_steps(model, ckpt["names"], c, score, lambda m: calib, recover, importance_estimator(c, cfg))
    after = score(stepped.model)
    tuned, final = {"map50": None, "map50_95": None}, stepped.path
    recipe, collapsed = None, None
    if c.finetune_epochs > 0 and stepped.model is not model:
        result, recipe, collapsed = adaptive_finetune(c, stepped.path, after["map50_95"])
        tuned = score(reload(result.best))  # best.pt as detect.val reads it (the summary is the last epoch's)
        final = result.best if tuned["map50_95"] >= after["map50_95"] else stepped.path
    kept = keep_note(after, tuned, final == stepped.path)
    print(kept)
    atomic_write_bytes(Path(final).read_bytes(), c.out / "pruned.pt")
    report = _report(c, PruneRun(model, ckpt, gsum, calib, stepped, before, after, tuned))
    report["kept"] = kept
    report["finetune_hyp_used"], report["finetune_collapsed"] = recipe, collapsed
    report["map50_95_final"] = max(after["map50_95"], tuned["map50_95"] or 0.0)
    if c.latency_iters > 0:
        # one thread: the compute alone, steady where the all-core figure moves with a shared machine's state
        lat = onnx_latencies({"before": c.weights, "after": c.out / "pruned.pt"}, c.out, c.report_shape,
                             c.latency_iters, runtimes=("ort", "ort-1thread"))
        report["onnx_latency_ms"], report["onnx_latency_ms_single_thread"] = lat["ort"], lat["ort-1thread"]
    layers = report["layers"]
    plots(c.out, gammas, report["threshold"] if report["threshold"] == report["threshold"] else 0.0, layers)
    write_json(report, c.out / "report.json")
    write_markdown(c.out, report)
    print(f"GFLOPs at {c.report_shape[0]}x{c.report_shape[1]}: {report['gflops_before']:.2f} -> "
          f"{report['gflops_after']:.2f}; report: {c.out / 'report.md'}")
    return report


def keep_note(after: dict, tuned: dict, untuned: bool) -> str:
    """Which model pruned.pt is: a fine-tuning that ends below the surgery's output never replaces it."""
    if tuned["map50_95"] is None:
        return f"pruned.pt: the model right after pruning (mAP50-95 {after['map50_95']:.4f}; no fine-tuning)"
    if untuned:
        return (f"pruned.pt: the model right after pruning (mAP50-95 {after['map50_95']:.4f}): fine-tuning's best "
                f"epoch reached only {tuned['map50_95']:.4f}; try a gentler --finetune-hyp (configs/hyp/recover.yaml)")
    return (f"pruned.pt: fine-tuning's best epoch (mAP50-95 {tuned['map50_95']:.4f}, "
            f"{after['map50_95']:.4f} right after pruning)")


@dataclass
class PruneRun:
    """What the report describes: the start, its checkpoint and |gamma| summary, the calibration batch, the
    steps' outcome and the mAP before, right after the steps and after fine-tuning."""

    model: object
    ckpt: dict
    gsum: dict
    calib: torch.Tensor | None
    stepped: StepsResult
    before: dict
    after: dict
    tuned: dict


def _report(c: PruneConfig, r: PruneRun) -> dict:
    shape, model, pruned, steps = c.report_shape, r.model, r.stepped.model, r.stepped.steps
    before, after, tuned, gsum, calib = r.before, r.after, r.tuned, r.gsum, r.calib
    return {
        "weights": str(c.weights), "data": str(c.data), "strategy": c.strategy, "ratio": c.ratio,
        "gflops_target": c.gflops, "gflops_at_most": c.gflops_at_most,
        "threshold": c.threshold if c.threshold is not None else float("nan"), "steps": steps,
        "step_epochs": c.step_epochs, "max_drop": c.max_drop, "stopped": r.stepped.stopped, "hyp": c.hyp,
        "finetune_hyp": c.finetune_hyp, "set": c.set,
        "min_keep": c.min_keep, "round_to": c.round_to,
        "taylor_images": c.taylor_images if c.strategy == "taylor" else None,
        "calibration_images": 0 if calib is None else len(calib), "compensation": c.compensation, "match_bn": c.match_bn,
        "shape": list(shape),
        "params_before": count_params(model), "params_after": count_params(pruned),
        "gflops_before": count_gflops(model, shape), "gflops_after": count_gflops(pruned, shape),
        "map50_before": before["map50"], "map50_pruned": after["map50"], "map50_finetuned": tuned["map50"],
        "map50_95_before": before["map50_95"], "map50_95_pruned": after["map50_95"],
        "map50_95_finetuned": tuned["map50_95"], "finetune_epochs": c.finetune_epochs, "distill": c.distill,
        "val_interval": c.val_interval,
        "epochs_total": c.step_epochs * len(steps) * (c.steps > 1) + c.finetune_epochs,
        "gamma": gsum, "sparsity_trained": looks_sparsity_trained(gsum),
        "sparsity_training": sparsity_history(r.ckpt), "layers": layer_table(model, pruned),
    }


def sparsity_history(ckpt: dict) -> dict | None:
    """The |gamma| summary the trainer stored before and after a sparsity run (None if it was not one)."""
    g = (ckpt.get("meta") or {}).get("bn_gamma")
    if not g or not g.get("sparsity"):
        return None
    return {"strength": g["sparsity"], "start": g["start"], "end": g["now"]}
