"""Where a run stands, and the checkpointer that saves and restores it.

``last.pt`` holds the model, the EMA and everything needed to continue exactly: the state
record below, optimiser, scheduler, scaler, RNG and the run's configuration. ``best.pt`` holds
the weights only. Both are our plain-dict format, written atomically.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from detect.hyp import Hyp
from detect.optim import bn_gamma_summary
from detect.weights import atomic_save, make_checkpoint


@dataclass
class TrainState:
    """``iteration`` counts the batches done in ``epoch``; 0 means ``epoch`` is complete."""

    epoch: int = 0
    iteration: int = 0
    best_fitness: float = -1.0
    epochs_without_gain: int = 0
    ema_updates: int = 0
    gamma_start: dict | None = None

    def start(self) -> tuple[int, int]:
        """(epoch, batch) a resumed run starts at."""
        return (self.epoch + 1, 0) if self.iteration == 0 else (self.epoch, self.iteration)


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class RecoveryTimer:
    """When a mid-epoch last.pt is due: every ``minutes`` of training (0: never), so a SIGKILL or an
    out-of-memory kill loses at most that long (timm's ``CheckpointSaver.save_recovery``)."""

    def __init__(self, minutes: float):
        self.period, self.since = 60 * minutes, time.monotonic()

    def due(self) -> bool:
        if self.period <= 0 or time.monotonic() - self.since < self.period:
            return False
        self.since = time.monotonic()
        return True


class Checkpointer:
    """Writes ``weights/last.pt`` and ``weights/best.pt`` of one run; reads a last.pt back."""

    def __init__(self, out: Path, names: list[str]):
        self.dir, self.names = Path(out) / "weights", list(names)
        self.last, self.best = self.dir / "last.pt", self.dir / "best.pt"

    def save_last(self, model, ema, objects: dict, state: TrainState, config: dict, hyp: Hyp) -> None:
        """``objects``: optimizer, scheduler, scaler (anything with ``state_dict``)."""
        train = {
            **dataclasses.asdict(state),
            "epochs": config["epochs"],
            **{k: v.state_dict() for k, v in objects.items()},
            "amp": config["amp"],
            "rng": rng_state(),
            "config": config,
            "hyp": hyp.as_dict(),
        }
        meta = {"epoch": state.epoch + 1 if state.iteration == 0 else state.epoch, "bn_gamma": self._gamma(ema, state, hyp)}
        atomic_save(make_checkpoint(model, self.names, ema=ema.module.state_dict(), train=train, meta=meta), self.last)

    def save_best(self, model, weights: dict, state: TrainState, hyp: Hyp, meta: dict) -> None:
        """``weights``: the state dict that was evaluated (the EMA, or its precise-BN / SWA variant)."""
        gamma = {"start": state.gamma_start, "now": bn_gamma_summary(model), "sparsity": hyp.sparsity}
        atomic_save(make_checkpoint(model, self.names, ema=weights, meta={**meta, "bn_gamma": gamma}), self.best)

    @staticmethod
    def _gamma(ema, state: TrainState, hyp: Hyp) -> dict:
        return {"start": state.gamma_start, "now": bn_gamma_summary(ema.module), "sparsity": hyp.sparsity}

    @staticmethod
    def restore(ckpt: dict, model, ema, objects: dict) -> TrainState:
        """Load a last.pt into freshly built objects; returns the state to continue from."""
        tr = ckpt["train"]
        model.load_state_dict(ckpt["model"])
        ema.module.load_state_dict(ckpt["ema"])
        for name, obj in objects.items():
            saved = tr.get(name)
            if name == "scaler":  # an empty state (a bf16 or CPU run) must never reach an enabled fp16 scaler
                if obj.is_enabled() and saved:
                    obj.load_state_dict(saved)
                elif obj.is_enabled():
                    print("note: the saved run had no fp16 loss scaler; starting a fresh one", file=sys.stderr)
                continue
            obj.load_state_dict(saved)
        fields = {f.name for f in dataclasses.fields(TrainState)}
        state = TrainState(**{k: v for k, v in tr.items() if k in fields})
        ema.updates = state.ema_updates = int(tr.get("ema_updates", state.ema_updates))
        restore_rng(tr["rng"])
        return state
