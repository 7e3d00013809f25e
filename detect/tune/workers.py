"""Running a study: one worker in this process, or one per GPU (``--devices``) / K on the CPU (``--workers``).

Every worker loads the same study from the shared storage and asks it for trials until the study holds
``--trials`` finished or pruned ones (running ones count as claimed, so K workers stop at N, not N + K - 1).
Worker processes run in their own process group: a Ctrl-C or SIGTERM reaches this process only, which
passes it on once, so each worker stops its trial at the next optimiser step (queued again for the next
run) and the command exits 130 / 143 as training does.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys

import optuna
import torch

from detect.cli import USER_ERRORS
from detect.errors import UsageError
from detect.train.faults import STOP_SIGNALS, SignalStop
from detect.tune.objective import OBJECTIVES as OBJECTIVE_NAMES
from detect.tune.objective import Interrupted, Objective, TrialFailed, TuneConfig
from detect.tune.report import write_all
from detect.tune.study import claimed, counted, fail_orphans, make_pruner, make_sampler, open_storage


class StopFlag:
    """The worker's SignalStop as fit's ``interrupt``: read-only, so fit does not reinstall the handlers."""

    def __init__(self, stop: SignalStop):
        self._stop = stop

    @property
    def signal(self) -> int | None:
        return self._stop.signal


def open_study(tc: TuneConfig, worker: int = 0):
    """Create or join the study; a new one starts with the base hyperparameters as its first trial."""
    storage = open_storage(tc.storage, tc.out, tc.heartbeat_s)
    study = optuna.create_study(study_name=tc.study, storage=storage, load_if_exists=True, directions=tc.directions,
                                sampler=make_sampler(tc.sampler, tc.seed + worker, tc.startup, len(tc.objectives)),
                                pruner=make_pruner(tc.pruner, tc.base.epochs))
    if [d.name.lower() for d in study.directions] != tc.directions:
        raise UsageError(f"study {tc.study} was created with --objectives {' '.join(OBJECTIVE_NAMES[len(study.directions) - 1])}"
                         f"; give the same, or another --study / --out")
    if not study.get_trials(deepcopy=False) and worker == 0:
        study.enqueue_trial(base_values(tc), user_attrs={"baseline": True}, skip_if_exists=True)
    return study, storage


def base_values(tc: TuneConfig) -> dict:
    """The searched keys' values in the base run (the study's first trial), where the space can hold them."""
    values = {}
    for p in tc.space.params:
        value = tc.base_value(p.name)
        if value is not None and (p.kind != "categorical" or value in p.choices):
            values[p.name] = value
    return values


def work(tc: TuneConfig, worker: int = 0, device: str | None = None) -> int:
    """Run trials until the study has enough; the exit status (0, or 128 + a signal)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a caught trial failure would print its traceback
    study, storage = open_study(tc, worker)
    orphans = fail_orphans(study, storage)
    if isinstance(storage, optuna.storages.RDBStorage):  # heartbeats older than the grace period: failed, requeued
        optuna.storages.fail_stale_trials(study)
    if orphans:
        print(f"worker {worker}: trials {orphans} had lost their worker; failed and queued again", file=sys.stderr)
    if counted(study) < tc.trials <= claimed(study):
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        where = ", ".join(f"{t.number} on {t.user_attrs.get('host', '?')}" for t in running)
        print(f"worker {worker}: the study's last trials are running ({where}); "
              f"nothing to start. If their workers died: a journal fails them when a worker starts on their host, "
              f"PostgreSQL {3 * tc.heartbeat_s} s after their last heartbeat; then run again", file=sys.stderr)
    with SignalStop() as stop:
        flag = StopFlag(stop)

        def enough(study, trial) -> None:
            why = trial.user_attrs.get("fail_reason") or trial.user_attrs.get("pruned_reason")
            values = ", ".join(f"{k} {v:.4f}" for k, v in zip(tc.objectives, trial.values or ()))
            print(f"worker {worker}: trial {trial.number} {trial.state.name.lower()}"
                  + (f", {values}" if values else "") + (f": {why}" if why else ""), flush=True)
            if flag.signal is not None or claimed(study) >= tc.trials:
                study.stop()

        if claimed(study) < tc.trials:
            try:
                study.optimize(Objective(tc, worker, device, flag), callbacks=[enough], catch=(TrialFailed,),
                               gc_after_trial=True)
            except Interrupted as e:
                return 128 + e.signal
        return 128 + stop.signal if stop.signal is not None else 0


def _child(tc: TuneConfig, worker: int, device: str | None, threads: int) -> None:
    os.setpgrp()  # the parent alone receives the terminal's signals and forwards them once
    if threads:
        torch.set_num_threads(threads)
    try:
        code = work(tc, worker, device)
    except (*USER_ERRORS, UsageError) as e:
        print(f"error: worker {worker}: {e}", file=sys.stderr)
        code = 2
    sys.exit(code)


def run_workers(tc: TuneConfig) -> int:
    """All the study's workers on this machine; the exit status."""
    slots = [f"cuda:{d}" for d in tc.devices] if tc.devices else [tc.base.device] * tc.workers
    if len(slots) == 1:
        return work(tc, 0, slots[0])
    open_study(tc)  # created once here: K processes creating it at once would race
    threads = 0 if tc.devices else max(1, (os.cpu_count() or 1) // len(slots))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_child, args=(tc, i, slot, threads), name=f"tune-worker-{i}") for i, slot in enumerate(slots)]
    received: list[int] = []

    def forward(signum, frame) -> None:
        if received:
            return
        received.append(signum)
        print(f"\n{signal.Signals(signum).name}: each worker stops its trial at the next step (queued again)",
              file=sys.stderr)
        for p in procs:
            if p.pid is not None and p.is_alive():
                os.kill(p.pid, signum)

    previous = {s: signal.signal(s, forward) for s in STOP_SIGNALS}
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if received:
        return 128 + received[0]
    codes = [p.exitcode for p in procs]
    return next((c for c in codes if c), 0)


def search(tc: TuneConfig) -> tuple[int, dict]:
    """Run the study's workers here, then write its files: (exit status, the best trial's summary)."""
    code = run_workers(tc)
    study = optuna.load_study(study_name=tc.study, storage=open_storage(tc.storage, tc.out, tc.heartbeat_s))
    return code, write_all(study, tc)
