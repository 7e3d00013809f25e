"""Loggers kept out of the loop (as YOLOv5's callbacks do): the engine calls hooks, these write.

All run on rank 0 only. A callback implements any of ``on_fit_start(run)``,
``on_epoch_start(run, epoch, skip)``, ``on_batch_end(run, epoch, i, images, labels, mloss, rate)``,
``on_epoch_end(run, epoch, row)`` and ``on_fit_end(run, summary)``; ``row`` maps CSV_FIELDS to values.
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from pathlib import Path

import torch
from tqdm import tqdm

from detect.optim import bn_gammas
from detect.outputs import atomic_write_text
from detect.visual import plot_results, save_batch

CSV_FIELDS = [
    "epoch", "train/box", "train/obj", "train/cls", "train/distill", "lr/0", "lr/1", "lr/2", "images_per_s",
    "sparsity", "gamma_median", "gamma_below_0.01", "group_below_0.01", "removed_over_kept", "precision", "recall", "map50", "map50_95",
    "precise_bn", "swa/map50", "swa/map50_95",
]  # fmt: skip


EVENTS = ("on_fit_start", "on_epoch_start", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callbacks:
    """Dispatches each event to every callback that implements it.

    Only the names in EVENTS exist: a misspelt event, called or implemented (``on_epoch_ends``), is an
    error at once rather than a hook that silently never runs (YOLOv5's ``Callbacks.run`` does the same)."""

    def __init__(self, callbacks=()):
        self.items = list(callbacks)
        for cb in self.items:
            unknown = sorted(n for n in dir(cb) if n.startswith("on_") and n not in EVENTS)
            if unknown:
                raise TypeError(f"{type(cb).__name__} implements {', '.join(unknown)}: not an event "
                                f"({', '.join(EVENTS)})")

    def __getattr__(self, event: str):
        if event not in EVENTS:
            raise AttributeError(f"no callback event {event!r} ({', '.join(EVENTS)})")

        def dispatch(*args):
            for cb in self.items:
                fn = getattr(cb, event, None)
                if fn is not None:
                    fn(*args)

        return dispatch


class CsvLogger:
    """results.csv, one row per epoch; a resumed run appends under the header it started with."""

    def __init__(self, out: Path, resumed: bool):
        self.path = Path(out) / "results.csv"
        if resumed and self.path.is_file():
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), CSV_FIELDS)
        else:
            self.fields = CSV_FIELDS
            atomic_write_text(",".join(CSV_FIELDS) + "\n", self.path)

    def on_epoch_end(self, run, epoch: int, row: dict) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, self.fields, extrasaction="ignore")
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        with open(self.path, "a", newline="") as f:
            f.write(buf.getvalue())


class TensorBoardLogger:
    def __init__(self, out: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter  # lazy: slow to import and warns; training only
        self.writer = SummaryWriter(str(out))

    def on_epoch_end(self, run, epoch: int, row: dict) -> None:
        for k, v in row.items():
            if k != "epoch" and isinstance(v, int | float) and not math.isnan(v):
                self.writer.add_scalar(k, v, epoch + 1)
        if run.config.hyp.sparsity > 0:
            gammas = bn_gammas(run.model)
            if gammas.numel():
                self.writer.add_histogram("bn_gamma_abs", gammas.abs(), epoch + 1)

    def on_fit_end(self, run, summary: dict) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar per epoch with the running losses, learning rate and throughput."""

    def __init__(self, disable: bool | None = None):
        self.disable, self.bar = disable, None

    def on_epoch_start(self, run, epoch: int, skip: int) -> None:
        self.bar = tqdm(total=run.data.batches, initial=skip, desc=f"epoch {epoch + 1}/{run.config.epochs}",
                        disable=self.disable)

    def on_batch_end(self, run, epoch, i, images, labels, mloss, rate) -> None:
        mem = f" {torch.cuda.memory_reserved(run.device) / 2**30:.1f}G" if run.device.type == "cuda" else ""
        lr = run.opt.optimizer.param_groups[0]["lr"]
        self.bar.set_postfix_str(
            " ".join(f"{k} {float(v):.3f}" for k, v in mloss.items()) + f" lr {lr:.2e} {rate:.1f} img/s{mem}",
            refresh=False
        )
        self.bar.update(1)

    def on_epoch_end(self, run, epoch: int, row: dict) -> None:
        if self.bar is not None:
            self.bar.close()
        if not math.isnan(row["map50"]):
            print(f"epoch {epoch + 1}: mAP50 {row['map50']:.4f} mAP50-95 {row['map50_95']:.4f} "
                  f"P {row['precision']:.3f} R {row['recall']:.3f}; {row['images_per_s']:.1f} img/s")
        if not math.isnan(row["swa/map50_95"]):
            print(f"SWA of the last {run.config.hyp.swa_epochs} epochs: mAP50 {row['swa/map50']:.4f} "
                  f"mAP50-95 {row['swa/map50_95']:.4f}")


class BatchPreview:
    """train_batch0..2.jpg: the first augmented batches with their boxes, to check the labels by eye."""

    def on_batch_end(self, run, epoch, i, images, labels, mloss, rate) -> None:
        if epoch == 0 and i < 3:
            save_batch(images, labels, run.data.cfg.names, run.config.out / f"train_batch{i}.jpg")


class ResultsPlot:
    def on_fit_end(self, run, summary: dict) -> None:
        plot_results(run.config.out / "results.csv", run.config.out / "results.png")


def default_callbacks(out: Path, resumed: bool, quiet: bool) -> list:
    return [CsvLogger(out, resumed), TensorBoardLogger(out), ProgressBar(disable=True if quiet else None),
            BatchPreview(), ResultsPlot()]
