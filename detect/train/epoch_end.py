"""What happens between two epochs: averaging, validation, the results row, checkpoints, patience.

Precise BN and the SWA finish run on every rank (their statistics are all-reduced), and so does validation,
each rank on its share of the batches (rank 0 merges the detections and scores them); logging and saving
on rank 0.
"""

from __future__ import annotations

from detect.evaluate import DEFAULT_BATCH
from detect.groups import prunable_groups, separation
from detect.hyp import Hyp
from detect.optim import bn_gamma_summary, sparsity_strength
from detect.train.engine import EpochResult, evaluate
from detect.train.precise_bn import precise_copy

NAN = float("nan")


def fitness(m: dict) -> float:
    """best.pt is chosen by 0.1 mAP50 + 0.9 mAP50-95, as in YOLOv5."""
    return 0.1 * m["map50"] + 0.9 * m["map50_95"]


def end_of_epoch(run, epoch: int, result: EpochResult) -> dict | None:
    """Returns the validation metrics of this epoch (rank 0, when it validated), else None."""
    cfg, state = run.config, run.state
    state.epoch, state.iteration, state.ema_updates = epoch, 0, run.opt.ema.updates
    if run.swa is not None:
        run.swa.after_epoch(run.model, epoch)
    final = epoch == cfg.epochs - 1
    validated = final or (epoch + 1) % cfg.val_interval == 0
    evaluated, precise = run.opt.ema.module, 0
    if validated and cfg.hyp.precise_bn_batches > 0:
        evaluated, precise = precise_copy(run.opt.ema.module, run)
    swa_model = run.swa.finish(run) if (final and run.swa is not None) else None
    metrics = _validate(run, evaluated) if validated else {}  # every rank runs its share of the batches
    swa_metrics = _validate(run, swa_model) if swa_model is not None else {}
    if not run.main:
        return None
    improved = validated and fitness(metrics) > state.best_fitness
    if improved:
        state.best_fitness, state.epochs_without_gain = fitness(metrics), 0
    elif validated:
        state.epochs_without_gain += cfg.val_interval
    run.callbacks.on_epoch_end(run, epoch, _row(run, epoch, result, metrics, swa_metrics, precise))
    ck = run.checkpointer
    ck.save_last(run.model, run.opt.ema, run.objects(), state, cfg.to_plain(), cfg.hyp)
    meta = {"epoch": epoch + 1, **_headline(metrics)}
    if improved:
        ck.save_best(run.model, evaluated.state_dict(), state, cfg.hyp,
                     {**meta, "fitness": state.best_fitness, "precise_bn_batches": precise})
    if swa_metrics and fitness(swa_metrics) > state.best_fitness:
        state.best_fitness = fitness(swa_metrics)
        ck.save_best(run.model, swa_model.state_dict(), state, cfg.hyp,
                     {**meta, **_headline(swa_metrics), "fitness": state.best_fitness, "swa_epochs": cfg.hyp.swa_epochs})
        print(f"SWA weights score best (fitness {state.best_fitness:.4f}): saved as {ck.best}")
    return metrics or None


def _validate(run, model) -> dict:
    cfg = run.config
    return evaluate(model, run.data.val, run.data.cfg.names, cfg.val_img or cfg.img, DEFAULT_BATCH,
                    min(cfg.workers, 2), run.device, shard=(run.rank, run.world))


def _headline(m: dict) -> dict:
    return {k: m[k] for k in ("map50", "map50_95", "precision", "recall") if k in m}


def _separation(model, hyp: Hyp) -> dict:
    """Group-score separation at the target ratio: whether sparsity training has made a prune cheap."""
    if hyp.sparsity <= 0:
        return {"group_below_0.01": NAN, "removed_over_kept": NAN}
    return separation(prunable_groups(model), hyp.sparsity_target)


def _row(run, epoch: int, result: EpochResult, metrics: dict, swa: dict, precise: int) -> dict:
    hyp = run.config.hyp
    strength = sparsity_strength(hyp.sparsity, hyp.sparsity_schedule, epoch / run.config.epochs)
    gamma = bn_gamma_summary(run.opt.ema.module)
    lrs = [g["lr"] for g in run.opt.optimizer.param_groups]
    row = {
        "epoch": epoch + 1,
        "train/distill": NAN,  # without a teacher
        **{f"train/{k}": v for k, v in result.mloss.items()},
        **{f"lr/{j}": lr for j, lr in enumerate(lrs)},
        "images_per_s": result.images_per_s,
        "sparsity": strength,
        "gamma_median": gamma["median"],
        "gamma_below_0.01": gamma["share_below_0.01"],
        **_separation(run.opt.ema.module, hyp),
        "precise_bn": precise,
        "swa/map50": swa.get("map50", NAN),
        "swa/map50_95": swa.get("map50_95", NAN),
    }
    row.update({k: metrics.get(k, NAN) for k in ("precision", "recall", "map50", "map50_95")})
    return row
