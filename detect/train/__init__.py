"""Training as a library: ``fit(TrainConfig(...)) -> FitResult``; ``python -m detect.train`` is its CLI.

One idea per module:
  config.py     TrainConfig (typed run settings, argparse, resume from a last.pt alone)
  builders.py   model (+ head transfer), data pipeline, optimiser/scheduler/scaler/EMA
  step.py       one micro-batch and optimiser step: AMP, SAM, accumulation, no_sync, distillation
  hooks.py      gradient hooks on unscaled gradients: sparsity, centralisation, clipping
  engine.py     train_one_epoch, evaluate
  epoch_end.py  validation, results row, checkpoints, patience
  state.py      TrainState and the Checkpointer (last.pt / best.pt)
  callbacks.py  CSV, TensorBoard, progress bar, batch previews, plots
  faults.py     output-folder lock, SIGINT/SIGTERM handling
  distributed.py  DDP set-up and agreement across ranks
  swa.py, precise_bn.py  weight averaging and BN re-estimation
  fit.py        fit()
"""

from __future__ import annotations

from detect.train.config import TrainConfig, config_from_args, parse_args
from detect.train.faults import SignalStop
from detect.train.fit import FitResult, fit

Stop = SignalStop  # the interrupt ``train`` installs (tests replace it)

__all__ = ["FitResult", "Stop", "TrainConfig", "config_from_args", "fit", "parse_args", "train"]


def train(args) -> dict:
    """``parse_args`` namespace -> ``fit``; the summary dict, or ``{"stopped": True}`` after a signal."""
    result = fit(config_from_args(args), interrupt=Stop())
    return {"stopped": True} if result.stopped else result.summary
