"""One trial: the sampled values laid over the base hyperparameters, one ``fit()`` in ``DIR/trials/NNNN``.

The trainer's fitness (0.1 mAP50 + 0.9 mAP50-95) is reported to Optuna at each validation; when the pruner
says stop, the run halts cleanly after that epoch (``run.halt``) and the trial is recorded as pruned. The
trial's value is its best fitness (the best.pt a team would keep). With ``objectives = ("fitness", "latency")``
the trial's values are that fitness and its best.pt's ONNX Runtime latency (``detect.tune.latency``), and
nothing is pruned: Optuna's pruners judge one objective.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from detect.train import TrainConfig, fit
from detect.train.callbacks import default_callbacks
from detect.train.epoch_end import fitness
from detect.tune.latency import LatencyConfig, onnx_latency_ms
from detect.tune.space import SearchSpace
from detect.tune.study import surplus, worker_tag

OBJECTIVES = (("fitness",), ("fitness", "latency"))  # what --objectives accepts


@dataclass
class TuneConfig:
    """A study: what every trial trains with (``base``), what it varies (``space``) and how it is run."""

    base: TrainConfig  # every detect.train option; out and hyp are replaced per trial
    space: SearchSpace
    out: Path
    trials: int = 20  # the study's total (finished or pruned trials), not an increment
    study: str = "tune"
    storage: str | None = None  # None: DIR/study.journal
    sampler: str = "tpe"
    pruner: str = "hyperband"
    workers: int = 1  # CPU worker processes (threads divided between them)
    devices: tuple[str, ...] = ()  # one worker per GPU index
    seed: int = 0
    startup: int = 5  # random trials before TPE / CMA-ES model the results
    heartbeat_s: int = 60  # RDB storage: a worker silent for 3x this is dead, its trial failed and run again
    objectives: tuple[str, ...] = ("fitness",)  # or ("fitness", "latency"): maximise one, minimise the other
    latency: LatencyConfig = LatencyConfig()  # how the latency objective is timed

    def __post_init__(self):
        self.out = Path(self.out)
        self.objectives = tuple(self.objectives)

    @property
    def directions(self) -> list[str]:
        return ["maximize", "minimize"][: len(self.objectives)]

    def base_value(self, key: str):
        """The base run's value of a searched key: a run option (img, model, weights) or a hyperparameter."""
        options = {"img": self.base.img, "model": self.base.model, "weights": self.base.weights}
        return options[key] if key in options else getattr(self.base.hyp, key, None)


class TrialFailed(Exception):
    """A trial that raised (non-finite loss, out of memory): recorded as failed with its reason; the study goes on."""


class Interrupted(Exception):
    """SIGINT/SIGTERM reached a worker: its trial is failed and queued again, the worker exits 128 + N."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signal = signum


class ReportToTrial:
    """Callback: fitness to Optuna at each validation; halts the run where the pruner says so."""

    def __init__(self, trial, pruner: str):
        self.trial, self.pruner = trial, pruner

    def on_epoch_end(self, run, epoch: int, row: dict) -> None:
        if row["map50"] != row["map50"]:  # NaN: this epoch did not validate
            return
        value = fitness(row)
        self.trial.report(value, step=epoch + 1)
        if self.trial.should_prune():
            run.halt(f"pruned by the {self.pruner} pruner at epoch {epoch + 1} (fitness {value:.4f})")


def trial_config(tc: TuneConfig, number: int, values: dict) -> TrainConfig:
    """The base run with this trial's values: hyperparameters checked by the schema, run options replaced."""
    hyp_changes, options = SearchSpace.split(values)
    if "weights" in options and "model" not in options:
        options["model"] = None  # the architecture saved in the drawn weights (a slimmed model's widths)
    return dataclasses.replace(tc.base, out=tc.out / "trials" / f"{number:04d}", hyp=tc.base.hyp.replace(**hyp_changes),
                               quiet=True, **options)


def twin_of(trial):
    """An earlier trial with exactly these parameters (finished, pruned or running), if any."""
    for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        if t.number != trial.number and t.params == trial.params:
            return t
    return None


class Objective:
    def __init__(self, tc: TuneConfig, worker: int, device: str | None, stop):
        self.tc, self.worker, self.device, self.stop = tc, worker, device, stop

    def __call__(self, trial) -> float:
        if self.stop.signal is not None:
            raise Interrupted(self.stop.signal)
        if surplus(trial, self.tc.trials):  # left out of trials.csv and the report
            trial.set_user_attr("surplus", True)
            trial.study.stop()
            raise TrialFailed(f"trial {trial.number}: the study already holds {self.tc.trials} trials")
        values = self.tc.space.suggest(trial)
        for k, v in {**worker_tag(), "worker": self.worker, "device": self.device or "auto"}.items():
            trial.set_user_attr(k, v)
        twin = twin_of(trial)
        if twin is not None:  # never train the same parameters twice (a categorical space, a seeded retry)
            return self._twin(trial, twin)
        config = dataclasses.replace(trial_config(self.tc, trial.number, values), device=self.device or self.tc.base.device)
        trial.set_user_attr("out", str(config.out))
        callbacks = default_callbacks(config.out, False, True)
        if len(self.tc.objectives) == 1:  # Optuna takes intermediate values of one objective only
            callbacks.append(ReportToTrial(trial, self.tc.pruner))
        try:
            result = fit(config, callbacks=callbacks, interrupt=self.stop)
        except (FloatingPointError, MemoryError, torch.OutOfMemoryError) as e:
            trial.set_user_attr("fail_reason", f"{type(e).__name__}: {str(e).splitlines()[0]}")
            raise TrialFailed(str(e)) from e
        if result.stopped:
            trial.set_user_attr("fail_reason", f"interrupted by {signal.Signals(result.stopped).name}")
            trial.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            raise Interrupted(result.stopped)
        if result.halted:
            trial.set_user_attr("pruned_reason", result.halted)
            raise optuna.TrialPruned(result.halted)
        value = float(result.summary["best_fitness"])
        if len(self.tc.objectives) == 1:
            return value
        latency = onnx_latency_ms(Path(result.best), config.img, self.tc.latency)
        trial.set_user_attr("latency_ms", latency)
        return value, latency

    @staticmethod
    def _twin(trial, twin) -> float | tuple[float, float]:
        trial.set_user_attr("duplicate_of", twin.number)
        if "latency_ms" in twin.user_attrs:
            trial.set_user_attr("latency_ms", twin.user_attrs["latency_ms"])
        if twin.state == TrialState.COMPLETE:
            return float(twin.values[0]) if len(twin.values) == 1 else tuple(twin.values)
        if twin.state == TrialState.PRUNED:
            raise optuna.TrialPruned(f"same parameters as pruned trial {twin.number}")
        trial.set_user_attr("fail_reason", f"same parameters as running trial {twin.number}")
        raise TrialFailed(f"same parameters as running trial {twin.number}")
