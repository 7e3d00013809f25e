"""The learning-rate range test (Smith 2017; fastai's lr_find): a few hundred steps with the learning rate
rising exponentially, the loss recorded at each; the suggestion is the steepest descent of the smoothed loss.

The curve is written beside the figure because the steepest point is a heuristic: a person should look.
Weight decay and label smoothing are off during the test (regularisers blur the loss's response to the
rate); an optimiser step per batch (no accumulation), no warmup. It stops early once the smoothed loss
exceeds 4x its minimum (diverged).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from detect import cli  # noqa: E402
from detect.errors import UsageError  # noqa: E402
from detect.outputs import atomic_write_text, write_json  # noqa: E402
from detect.train import TrainConfig  # noqa: E402
from detect.train.engine import prepare_images  # noqa: E402
from detect.train.fit import setup  # noqa: E402

SMOOTHING = 0.98  # exponential moving average of the loss (bias-corrected), as fastai
DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum


@dataclass(frozen=True)
class LrFindConfig:
    steps: int = 300
    lr_min: float = 1e-6
    lr_max: float = 1.0


@dataclass
class LrFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr0: float  # steepest descent of the smoothed loss
    min_loss_lr: float  # where the smoothed loss was lowest (a rate 10x below it is the other common rule)
    diverged: bool

    def as_dict(self, base_lr0: float) -> dict:
        return {"suggested_lr0": self.suggested_lr0, "min_loss_lr": self.min_loss_lr, "base_lr0": base_lr0,
                "steps": len(self.lrs), "diverged": self.diverged}


def lr_find(train: TrainConfig, c: LrFindConfig, out: Path) -> LrFindResult:
    """Run the test from ``train``'s weights and data; writes lr_find.{csv,png,json} into ``out``."""
    if not 0 < c.lr_min < c.lr_max:
        raise UsageError(f"--lr-min {c.lr_min} and --lr-max {c.lr_max}: need 0 < min < max")
    if c.steps < 20:
        raise UsageError(f"--lr-steps {c.steps}: at least 20 (the suggestion skips the first 10%)")
    hyp = train.hyp.replace(weight_decay=0.0, label_smoothing=0.0, warmup_epochs=0.0, nominal_batch=train.batch)
    config = replace(train, out=Path(out), hyp=hyp, quiet=True)
    run = setup(config, 0, 1, cli.select_device(config.device), callbacks=())
    rates = c.lr_min * (c.lr_max / c.lr_min) ** (np.arange(c.steps) / (c.steps - 1))
    losses, smoothed, avg, best = [], [], 0.0, math.inf
    for i, (images, labels) in enumerate(tqdm(_batches(run, c.steps), total=c.steps, desc="lr-find")):
        for g in run.opt.optimizer.param_groups:
            g["lr"] = float(rates[i])
        loss, items = run.step.backward(prepare_images(images, run, 0, i), labels.to(run.device), True)
        value = float(sum(items.values()))
        if not math.isfinite(value):
            break
        run.step.step(i / c.steps)
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        losses.append(value)
        smoothed.append(avg / (1 - SMOOTHING ** (i + 1)))
        best = min(best, smoothed[-1])
        if i > c.steps // 10 and smoothed[-1] > DIVERGED * best:
            break
    result = _suggest(list(map(float, rates[: len(losses)])), losses, smoothed, len(losses) < c.steps)
    _write(result, Path(out), train.hyp.lr0)
    return result


def _batches(run, steps: int):
    """``steps`` training batches, epoch after epoch as the sampler orders them."""
    done, epoch = 0, 0
    while done < steps:
        run.data.sampler.set_epoch(epoch, 0)
        for batch in run.data.loader:
            yield batch
            done += 1
            if done == steps:
                return
        epoch += 1


def _suggest(lrs: list[float], losses: list[float], smoothed: list[float], diverged: bool) -> LrFindResult:
    if len(smoothed) < 10:
        raise UsageError(f"lr-find: the loss was not finite after {len(smoothed)} steps; lower --lr-min")
    s = np.asarray(smoothed)
    lo = len(s) // 10  # the first steps are the average warming up
    hi = int(np.argmin(s)) + 1 if np.argmin(s) > lo + 2 else len(s)  # the descent ends at the minimum
    slope = np.gradient(s[lo:hi], np.log10(lrs[lo:hi]))
    return LrFindResult(lrs, losses, smoothed, float(lrs[lo + int(np.argmin(slope))]), float(lrs[int(np.argmin(s))]),
                        diverged)


def _write(r: LrFindResult, out: Path, base_lr0: float) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "lr", "loss", "smoothed_loss"])
    w.writerows([i, f"{lr:.6g}", f"{x:.6g}", f"{s:.6g}"] for i, (lr, x, s) in enumerate(zip(r.lrs, r.losses, r.smoothed)))
    atomic_write_text(buf.getvalue(), out / "lr_find.csv")
    write_json(r.as_dict(base_lr0), out / "lr_find.json")
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(r.lrs, r.losses, color="0.8", lw=0.8, label="loss")
    ax.plot(r.lrs, r.smoothed, color="C0", label="smoothed")
    ax.axvline(r.suggested_lr0, color="C3", ls="--", label=f"steepest descent {r.suggested_lr0:.2g}")
    ax.axvline(base_lr0, color="C2", ls=":", label=f"base lr0 {base_lr0:g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss per image", title="learning-rate range test")
    top = np.percentile(r.smoothed, 95) * 1.5
    ax.set_ylim(min(r.smoothed) * 0.9, top)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "lr_find.png", dpi=100)
    plt.close(fig)
    print(json.dumps(r.as_dict(base_lr0)))
