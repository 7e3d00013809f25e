"""The two loops: ``train_one_epoch`` and ``evaluate`` (after DETR's and torchvision's engine.py)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from detect.evaluate import EvalConfig, run_eval
from detect.optim import apply_warmup
from detect.train.distributed import any_rank, mean_over_ranks


@dataclass
class EpochResult:
    mloss: dict[str, float]  # each named loss term's mean over the epoch's batches (and over the DDP ranks)
    images_per_s: float
    stopped_at: int | None = None  # batches done when a stop signal was honoured


def train_one_epoch(run, epoch: int, skip: int, stop) -> EpochResult:
    """Train ``run`` for one epoch from batch ``skip``; stops early (saving is the caller's) on a signal."""
    cfg, data, opt, step = run.config, run.data, run.opt, run.step
    data.sampler.set_epoch(epoch, skip * (cfg.batch // run.world))
    run.net.train()
    mloss: dict[str, torch.Tensor] = {}
    seen, t0 = 0, time.perf_counter()
    progress = epoch / cfg.epochs
    run.callbacks.on_epoch_start(run, epoch, skip)
    for i, (images, labels) in enumerate(data.loader, start=skip):
        ni = i + data.batches * epoch
        if ni < opt.warmup_iters:
            apply_warmup(opt.optimizer, ni, opt.warmup_iters, opt.lr_at(epoch), cfg.hyp)
        x = prepare_images(images, run, epoch, i)
        will_step = (i + 1) % opt.accumulate == 0 or i == data.batches - 1
        loss, items = step.backward(x, labels.to(run.device), will_step)
        bad = not bool(torch.isfinite(loss)) or _fault_injected(run.rank, ni)
        bad, stopping = any_rank([bad, will_step and stop.signal is not None], run.world, run.device)
        if bad:
            raise FloatingPointError(
                f"non-finite loss at epoch {epoch + 1}, iteration {i + 1} (global step {ni}) on "
                f"{'a rank of ' + str(run.world) if run.world > 1 else 'this run'}; stopping. The last good "
                f"checkpoint is {run.checkpointer.last}; lower lr0 or check the labels"
            )
        mloss = {k: (mloss.get(k, 0.0) * (i - skip) + v) / (i - skip + 1) for k, v in items.items()}
        seen += len(images) * run.world
        rate = seen / max(time.perf_counter() - t0, 1e-9)
        if will_step:
            step.step(progress)
            if stopping:
                return EpochResult(mean_over_ranks(mloss, run.world, run.device), rate, stopped_at=i + 1)
            if run.main and run.recovery.due():  # rank 0's clock alone: the others go on to the next collective
                run.save_last(epoch, i + 1)
                _kill_injected(ni)
        run.callbacks.on_batch_end(run, epoch, i, images, labels, mloss, rate)
    return EpochResult(mean_over_ranks(mloss, run.world, run.device), seen / max(time.perf_counter() - t0, 1e-9))


def prepare_images(images: torch.Tensor, run, epoch: int, i: int) -> torch.Tensor:
    """uint8 batch -> float in [0, 1] on the device; multi-scale resize; the model's memory format."""
    x = images.to(run.device, non_blocking=True).float().div_(255)
    hyp = run.config.hyp
    if hyp.multi_scale:
        x = random_scale(x, run.config.img, hyp.multi_scale_range, run.config.seed, epoch, i)
    return x.contiguous(memory_format=torch.channels_last) if run.channels_last else x


def random_scale(x: torch.Tensor, img: int, span, seed: int, epoch: int, i: int) -> torch.Tensor:
    """Resize the batch to a random stride-aligned size in [span[0], span[1]] x img (normalised labels stay valid)."""
    rng = np.random.default_rng([seed, epoch, i, 7])
    lo, hi = max(32, int(img * span[0]) // 32 * 32), max(32, int(img * span[1]) // 32 * 32)
    size = int(rng.integers(lo // 32, hi // 32 + 1)) * 32
    return x if size == x.shape[-1] else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _kill_injected(step: int) -> None:
    """Test hook: ``DETECT_TEST_SIGKILL_AT=STEP`` kills the process (SIGKILL: no handler runs) right after a
    recovery save at that global step, as an out-of-memory killer would."""
    if os.environ.get("DETECT_TEST_SIGKILL_AT") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def _fault_injected(rank: int, step: int) -> bool:
    """Test hook: ``DETECT_TEST_NAN_AT=RANK:STEP`` makes that rank's loss count as non-finite at that step."""
    spec = os.environ.get("DETECT_TEST_NAN_AT")
    return bool(spec) and spec == f"{rank}:{step}"


@torch.inference_mode()
def evaluate(model, samples, names, img: int, batch: int, workers: int, device, max_det: int = 300,
             progress: bool = False, shard: tuple[int, int] = (0, 1)) -> dict:
    """COCO metrics of ``model`` (eval mode, no autograd) on ``samples``; see ``detect.evaluate.run_eval``
    (with ``shard=(rank, world)``, every rank runs its batches and rank 0 alone gets the metrics)."""
    model.eval()
    c = EvalConfig(img, batch, max_det=max_det, workers=workers, progress=progress, shard=shard)
    metrics, _ = run_eval(lambda t: model(t.to(device).float()), samples, names, c)
    return metrics
