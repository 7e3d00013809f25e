"""Where a study lives and how it chooses: Optuna storage, sampler and pruner, and the trials nobody runs.

Storage: by default an Optuna journal file (``DIR/study.journal``): no server, and safe for several
processes on one machine or on a shared file system (file locks); SQLite is refused, it is not safe for
parallel workers (optuna#4002). ``postgresql://`` (any SQLAlchemy URL of a server) is Optuna's RDB
storage, for many machines: the same command on each joins one study, and heartbeats let a trial whose
worker died be failed and run again (``RetryHeartbeatStaleTrialCallback``). A journal has no heartbeats: a RUNNING
trial whose worker PID is gone from this host is failed, and its parameters queued again, when the next
worker starts (``fail_orphans``).
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from detect.errors import UsageError

SAMPLERS = ("tpe", "cmaes", "random", "nsga2")
PRUNERS = ("hyperband", "median", "none")
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED)  # what --trials counts: a failed trial is run again
MAX_RETRY = 2  # a trial whose worker died is queued again at most this often


def open_storage(url: str | None, out: Path, heartbeat_s: int = 60):
    """The storage behind ``--storage`` (None: the journal file in ``out``)."""
    if url is None or url.endswith(".journal"):
        path = Path(url) if url else Path(out) / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite"):
        raise UsageError(f"--storage {url}: SQLite is not safe for parallel workers (optuna#4002); use the default "
                         "journal file (one machine or a shared disk) or postgresql://user@host/db (many machines)")
    if "://" not in url:
        raise UsageError(f"--storage {url}: expected postgresql://user:password@host:port/db (or a path to a .journal)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.x
            return RDBStorage(url, heartbeat_interval=heartbeat_s, grace_period=3 * heartbeat_s,
                              heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except Exception as e:  # SQLAlchemy's errors: the server is down, the role or database is unknown
        raise UsageError(f"--storage {_redact(url)}: cannot connect ({type(e).__name__}: {str(e).splitlines()[0]})") from None


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, rest = head.split("//", 1)
    return f"{scheme}//{rest.split(':', 1)[0]}:***@{tail}"


def make_sampler(name: str, seed: int, startup: int, objectives: int = 1):
    """Each worker gets its own seed (seed + worker index): workers seeded alike sample alike, the
    duplicate trials Ray Tune users report (ultralytics#23814). TPE's constant liar keeps parallel
    workers off the region a running trial already covers. NSGA-II's first generation is its random
    start, so ``startup`` sizes its population (at least 4): Optuna's default of 50 would keep a study of
    a few dozen trials random from first to last."""
    if objectives > 1 and name == "cmaes":
        raise UsageError("--sampler cmaes: CMA-ES optimises one objective; with --objectives fitness latency use "
                         "nsga2 (the default) or tpe")
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(startup, 4))
    raise UsageError(f"--sampler {name}: expected one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, epochs: int):
    """Hyperband over epochs (the resource); median: below the median of the trials at the same epoch."""
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UsageError(f"--pruner {name}: expected one of {', '.join(PRUNERS)}")


def counted(study) -> int:
    return len(study.get_trials(deepcopy=False, states=COUNTED))


def claimed(study) -> int:
    """Trials finished or under way: a worker starts another only while this is below --trials."""
    return len(study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING)))


def surplus(trial, n: int) -> bool:
    """A trial started past the n-th: two workers each saw room for one more and both asked. The storage
    numbers trials in order, so the later one sees n claimed before it and stands down."""
    ahead = trial.study.get_trials(deepcopy=False, states=(*COUNTED, TrialState.RUNNING))
    return sum(t.number < trial.number for t in ahead) >= n


def worker_tag() -> dict:
    """What a trial records of the process that runs it (``fail_orphans`` reads it back)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True  # another user's process, or no PID recorded: not ours to judge
    return True


def fail_orphans(study, storage) -> list[int]:
    """Fail each RUNNING trial of this host whose worker process is gone; queue its parameters again.

    Two workers starting at once may both see an orphan: the storage lets one of them finish it, and only
    that one queues the retry."""
    host, failed = socket.gethostname(), []
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if t.user_attrs.get("host") != host or pid is None or _alive(pid):
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        try:
            storage.set_trial_user_attr(trial_id, "fail_reason", f"worker PID {pid} on {host} died mid-trial")
            if not storage.set_trial_state_values(trial_id, TrialState.FAIL):
                continue
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            continue  # another worker got there first
        if t.user_attrs.get("retries", 0) < MAX_RETRY:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number, "retries": t.user_attrs.get("retries", 0) + 1})
        failed.append(t.number)
    return failed
