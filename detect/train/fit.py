"""``fit(config) -> FitResult``: the one training entry point (CLI, pruning, benchmarks).

    from detect.train import TrainConfig, fit
    result = fit(TrainConfig(data="data.yaml", weights="yolov5n.pt", img=320, epochs=10, out="runs/x"))
    result.best, result.summary["map50_95"]

``hooks`` adds gradient hooks (after the hyp's sparsity term, before centralisation and
clipping); ``callbacks`` replaces the default loggers (``default_callbacks(...) + [mine]`` adds to them);
``interrupt`` replaces the SIGINT/SIGTERM handler (anything with a ``.signal`` attribute, optionally a
context manager). A callback ends a run early and cleanly with ``run.halt(reason)`` in ``on_epoch_end``
(a tuner's pruner, a recovery that collapsed): the loop stops after that epoch, best.pt and last.pt as
they are, and ``FitResult.halted`` says why.
"""

from __future__ import annotations

import contextlib
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from detect import cli
from detect.data.dataset import release_workers
from detect.errors import UsageError
from detect.loss import YOLOLoss
from detect.model import YOLOv5, build_model
from detect.optim import bn_gamma_summary
from detect.outputs import atomic_write_text, write_json
from detect.train.builders import (
    Data,
    Optimization,
    build_data,
    build_optimization,
    build_train_model,
    warmup_iterations,
)
from detect.train.callbacks import Callbacks, default_callbacks
from detect.train.config import TrainConfig
from detect.train.distributed import from_rank0, init_distributed
from detect.train.engine import train_one_epoch
from detect.train.epoch_end import end_of_epoch
from detect.train.faults import RunLock, SignalStop
from detect.train.hooks import default_hooks
from detect.train.state import Checkpointer, RecoveryTimer, TrainState
from detect.train.step import TrainStep
from detect.train.swa import SWA
from detect.weights import load_checkpoint, load_model


@dataclass
class FitResult:
    summary: dict = field(default_factory=dict)  # final metrics (rank 0); empty when stopped
    best: Path | None = None
    last: Path | None = None
    stopped: int | None = None  # the signal that stopped the run, if one did
    halted: str | None = None  # why a callback ended the run early (run.halt), if one did


@dataclass
class Run:
    """Everything one training run holds; what the engine, callbacks and epoch end read."""

    config: TrainConfig
    rank: int
    world: int
    device: torch.device
    data: Data
    model: YOLOv5
    net: torch.nn.Module
    opt: Optimization
    step: TrainStep
    checkpointer: Checkpointer
    state: TrainState
    callbacks: Callbacks
    swa: SWA | None
    resumed: bool
    recovery: RecoveryTimer
    halted: str | None = None

    def halt(self, reason: str) -> None:
        """End the run after this epoch (callbacks, rank 0): every rank stops at the same epoch end."""
        self.halted = reason

    def save_last(self, epoch: int, iteration: int = 0) -> None:
        """last.pt at ``iteration`` batches into ``epoch`` (0: the epoch is complete); rank 0 writes."""
        self.state.epoch, self.state.iteration, self.state.ema_updates = epoch, iteration, self.opt.ema.updates
        if self.main:
            self.checkpointer.save_last(self.model, self.opt.ema, self.objects(), self.state, self.config.to_plain(),
                                        self.config.hyp)

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"

    @property
    def main(self) -> bool:
        return self.rank == 0

    def objects(self) -> dict:
        """What last.pt saves beside the weights (anything with state_dict)."""
        return train_objects(self.opt, self.swa)


def train_objects(opt: Optimization, swa: SWA | None) -> dict:
    objs = {"optimizer": opt.optimizer, "scheduler": opt.scheduler, "scaler": opt.scaler}
    return {**objs, "swa": swa} if swa is not None else objs


def fit(config: TrainConfig, hooks=(), callbacks=None, interrupt=None) -> FitResult:
    rank, local_rank, world = init_distributed(config.device)
    device = cli.select_device(config.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    stop = interrupt if interrupt is not None else SignalStop()
    with contextlib.ExitStack() as stack:
        _lock_all_ranks(stack, config.out, rank, world, device)
        if hasattr(stop, "__exit__"):
            stack.enter_context(stop)
        run = setup(config, rank, world, device, hooks, callbacks)
        stack.callback(release_workers, run.data.loader)  # also on an exception: else exit may hang
        return _loop(run, stop)


def _lock_all_ranks(stack: contextlib.ExitStack, out: Path, rank: int, world: int, device) -> None:
    """Rank 0 takes the output folder's lock; every rank stops if it could not."""
    error = None
    if rank == 0:
        try:
            stack.enter_context(RunLock(out))
        except UsageError as e:
            error = e
    if from_rank0(error is not None, world, device):
        raise error or UsageError(f"{out}: in use by another training (rank 0 could not lock it)")


def setup(config: TrainConfig, rank: int, world: int, device, hooks=(), callbacks=None) -> Run:
    """Build the data, model, optimisation and loggers of a run (a resumed one from its last.pt)."""
    main, cuda = rank == 0, device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    _seed_all(config.seed + rank)
    data = build_data(config, rank, world, pin_memory=cuda, progress=main and not config.quiet)
    saved = load_checkpoint(config.resume_from) if config.resume_from else None
    if saved is not None:
        _check_resumable(saved, config.resume_from)
        model, source = build_model(saved["arch"]), f"resumed from {config.resume_from}"
    else:
        model, source = build_train_model(config, data.cfg.names)
    model.to(device)
    if cuda:  # NHWC on GPUs only: on the CPU, training-mode BatchNorm over channels-last tensors is 60-100x
        # less accurate than over NCHW (it changed the from-scratch trajectory), though 1.38x faster
        # (benchmarks/cpu_formats.py, docs/BENCHMARKS.md). CPU inference is NHWC: eval-mode BN is exact.
        model.to(memory_format=torch.channels_last)
    opt = build_optimization(config, model, data.batches, device)
    swa = SWA(model, config.hyp.swa_epochs, config.epochs) if config.hyp.swa_epochs > 0 else None
    checkpointer = Checkpointer(config.out, data.cfg.names)
    state = TrainState(gamma_start=bn_gamma_summary(model))
    if saved is not None:
        state = Checkpointer.restore(saved, model, opt.ema, train_objects(opt, swa))
        state.gamma_start = state.gamma_start or bn_gamma_summary(model)
    net = _wrap_distributed(model, config, world, device)
    teacher = _load_teacher(config, model, device)
    step = TrainStep(net, model, YOLOLoss(model.detect, config.hyp, config.img), opt.optimizer, opt.scaler, opt.ema,
                     default_hooks(config.hyp, hooks), opt.amp_dtype, teacher, config.hyp, world)
    if main:
        _write_run_files(config, saved is not None)
    cbs = Callbacks((callbacks if callbacks is not None else default_callbacks(config.out, saved is not None,
                                                                              config.quiet)) if main else ())
    run = Run(config, rank, world, device, data, model, net, opt, step, checkpointer, state, cbs, swa,
              saved is not None, RecoveryTimer(config.save_period_min))
    if main:
        _announce(run, source)
    return run


def _loop(run: Run, stop) -> FitResult:
    cfg, state = run.config, run.state
    start_epoch, skip = state.start() if run.resumed else (0, 0)
    run.callbacks.on_fit_start(run)
    metrics: dict = {}
    for epoch in range(start_epoch, cfg.epochs):
        result = train_one_epoch(run, epoch, skip if epoch == start_epoch else 0, stop)
        if result.stopped_at is not None:
            run.save_last(epoch, result.stopped_at)
            if run.main:
                print(f"stopped at epoch {epoch + 1}, iteration {result.stopped_at}; resume with "
                      f"python -m detect.train --resume {run.checkpointer.last}", file=sys.stderr)
            return FitResult(stopped=stop.signal or 2, last=run.checkpointer.last)
        run.opt.scheduler.step()
        metrics = end_of_epoch(run, epoch, result) or metrics
        if from_rank0(run.main and run.halted is not None, run.world, run.device):
            if run.main:
                print(f"halted after epoch {epoch + 1}: {run.halted}")
            break
        if from_rank0(run.main and state.epochs_without_gain >= cfg.patience, run.world, run.device):
            if run.main:
                print(f"early stop: no improvement in {cfg.patience} epochs; best is {run.checkpointer.best}")
            break
    return _finish(run, metrics)


def _finish(run: Run, metrics: dict) -> FitResult:
    ck = run.checkpointer
    if not run.main:
        return FitResult(best=ck.best, last=ck.last)
    summary = {
        "best_fitness": run.state.best_fitness,
        "epochs": run.config.epochs,
        **{k: metrics[k] for k in ("map50", "map50_95", "precision", "recall") if k in metrics},
        "per_class": metrics.get("per_class"),
        "weights": {"best": str(ck.best), "last": str(ck.last)},
        **({"halted": run.halted} if run.halted else {}),
    }
    run.callbacks.on_fit_end(run, summary)
    write_json(summary, run.config.out / "metrics.json")
    print(f"done: {ck.best} (fitness {run.state.best_fitness:.4f})" if Path(ck.best).is_file() else
          f"done: no epoch validated, so no best.pt; {ck.last}")
    return FitResult(summary, ck.best, ck.last, halted=run.halted)


# --------------------------------------------------------------------------- helpers
def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _check_resumable(saved: dict, path: Path) -> None:
    tr = saved["train"]
    if tr["epoch"] + 1 >= tr["epochs"] and tr["iteration"] == 0:
        raise UsageError(
            f"--resume: {path} finished all {tr['epochs']} epochs; to train longer start a new run with --weights {path}"
        )


def _wrap_distributed(model: YOLOv5, config: TrainConfig, world: int, device) -> torch.nn.Module:
    if world == 1:
        return model
    net = model
    if config.sync_bn and device.type == "cuda":
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    elif config.sync_bn and torch.distributed.get_rank() == 0:
        print("warning: --sync-bn needs CUDA (torch's SyncBatchNorm is GPU-only); ignored on CPU", file=sys.stderr)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _load_teacher(config: TrainConfig, model: YOLOv5, device):
    if not config.teacher:
        return None

    teacher, _ = load_model(config.teacher, device, fuse=False)
    if teacher.detect.m[0].out_channels != model.detect.m[0].out_channels:
        raise UsageError(f"--teacher {config.teacher} has a different head ({teacher.nc} classes) than the student")
    return batch_statistics_teacher(teacher)


def batch_statistics_teacher(teacher: YOLOv5) -> YOLOv5:
    """The teacher normalises with each batch's statistics, as the training-mode student does, and never
    updates its running ones (momentum 0). An eval-mode teacher differs from the same weights in training
    mode by up to 6 logits at batch 16 (measured on yolov5n): the student was pulled toward targets it
    could only reach by wrecking its BatchNorm, and a model distilled from itself fell from mAP50-95
    0.333 to 0.000 in one epoch (docs/BENCHMARKS.md); with batch statistics it stays where it is."""
    teacher.train().requires_grad_(False)
    for m in teacher.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 0.0
    return teacher


def _write_run_files(config: TrainConfig, resumed: bool) -> None:
    import yaml  # lazy: run files only

    config.out.mkdir(parents=True, exist_ok=True)
    if not resumed:
        atomic_write_text(yaml.safe_dump(config.hyp.as_dict(), sort_keys=False), config.out / "hyp.yaml")
        atomic_write_text(yaml.safe_dump(config.to_plain(), sort_keys=False), config.out / "args.yaml")


def _announce(run: Run, source: str) -> None:
    cfg, opt = run.config, run.opt
    _, warmup = warmup_iterations(cfg.hyp, run.data.batches, cfg.epochs)
    precision = {None: "fp32", torch.float16: "AMP fp16", torch.bfloat16: "AMP bf16"}[opt.amp_dtype]
    print(
        f"model {run.model.arch.get('name', 'custom')} nc={run.data.cfg.nc}: {source}; {len(run.data.train)} train / "
        f"{len(run.data.val)} {run.data.val_split} images; batch {cfg.batch} x accumulate {opt.accumulate}; "
        f"{warmup}; {precision} on {run.device}" + (f", {run.world} processes" if run.world > 1 else "")
    )
