"""python -m detect.tune: see ``python -m detect.tune --help``.

Exit status: 0 done (the study holds --trials finished or pruned trials); 2 bad input (a space file, a
storage URL, a device); 128 + N after signal N (130 SIGINT, 143 SIGTERM): the running trials are failed
and queued again, and the same command resumes the study.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna
import torch

from detect import cli
from detect.errors import UsageError
from detect.train.config import add_train_options, embedded_config
from detect.tune.latency import LatencyConfig
from detect.tune.lr_find import LrFindConfig, lr_find
from detect.tune.objective import OBJECTIVES, TuneConfig
from detect.tune.space import SearchSpace
from detect.tune.study import PRUNERS, SAMPLERS
from detect.tune.workers import search

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = """examples:
  python -m detect.tune --lr-find --data data.yaml --weights yolov5n.pt --img 320 --out runs/tune
  python -m detect.tune --data data.yaml --weights yolov5n.pt --img 320 --epochs 10 --trials 40 --out runs/tune
  python -m detect.tune ... --devices 0,1,2,3                          one worker per GPU
  python -m detect.tune ... --storage postgresql://user:pw@db-host/optuna   the same command on every machine
  python -m detect.tune ... --objectives fitness latency --space speed.yaml   NSGA-II: the mAP / CPU latency front
  optuna-dashboard runs/tune/study.journal                             live view (pip install optuna-dashboard)
Run the same command again to resume: --trials is the study's total."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m detect.tune",
        description="Hyperparameter search on Optuna: each trial one detect.train run with sampled values laid "
        "over --hyp, stopped early by a pruner when it falls behind. Writes DIR/trials.csv, best_hyp.yaml, "
        "best.pt, report.html and DIR/trials/NNNN/ (each trial's run).",
        epilog=EXAMPLES, formatter_class=cli.HelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/tune"), help="the study's folder (DIR)")
    p.add_argument("--space", type=Path, default=REPO / "configs/tune/default.yaml",
                   help="search space YAML: hyperparameter (or img / model) -> {low, high[, log]} or {choices}")
    p.add_argument("--trials", type=int, default=20, help="the study's total of finished or pruned trials")
    p.add_argument("--study", default="tune", help="study name (several studies may share one storage)")
    p.add_argument("--storage", default=None,
                   help="default: the journal file DIR/study.journal (one machine or a shared disk); "
                   "postgresql://user:password@host/db for many machines")
    p.add_argument("--objectives", nargs="+", choices=("fitness", "latency"), default=["fitness"],
                   help="fitness (0.1 mAP50 + 0.9 mAP50-95, maximised); fitness latency: also the best.pt's ONNX "
                   "Runtime latency on one CPU thread at img x img (minimised): the study keeps the Pareto front "
                   "(DIR/pareto.csv, pareto.png)")
    p.add_argument("--sampler", choices=SAMPLERS, default=None,
                   help="tpe: Bayesian (multivariate, constant liar for parallel workers); cmaes; random; nsga2 "
                   "(default: tpe; nsga2 with two objectives)")
    p.add_argument("--pruner", choices=PRUNERS, default=None,
                   help="stops trials that fall behind at a validation (default: hyperband, over epochs; none with "
                   "two objectives: Optuna's pruners judge one)")
    p.add_argument("--startup-trials", type=int, default=5,
                   help="random trials before TPE / CMA-ES take over; NSGA-II's population (at least 4)")
    p.add_argument("--latency-iters", type=int, default=50, help="with latency: timed runs per trial (the median)")
    p.add_argument("--devices", default=None, help="GPU indices, e.g. 0,1,2,3: one worker per GPU")
    p.add_argument("--workers", type=int, default=1,
                   help="CPU worker processes sharing the cores (data loading: --loader-workers)")
    p.add_argument("--loader-workers", type=int, default=2, help="data-loading processes per trial")
    p.add_argument("--heartbeat", type=int, default=60,
                   help="RDB storage: seconds between a worker's heartbeats; silent 3x this, its trial is run again")
    lr = p.add_argument_group("learning-rate range test (--lr-find: instead of a study)")
    lr.add_argument("--lr-find", action="store_true", help="write DIR/lr_find/lr_find.{png,csv,json} and stop")
    lr.add_argument("--lr-steps", type=int, default=300, help="optimiser steps of the test")
    lr.add_argument("--lr-min", type=float, default=1e-6, help="the rate of the first step")
    lr.add_argument("--lr-max", type=float, default=1.0, help="the rate of the last step (it stops early on divergence)")
    train = p.add_argument_group("each trial's training (python -m detect.train's options)")
    add_train_options(train, skip=("out", "workers"))
    return p


def devices(spec: str | None, workers: int) -> tuple[str, ...]:
    if spec is None:
        return ()
    if workers != 1:
        raise UsageError("give --devices (one worker per GPU) or --workers (CPU workers), not both")
    ids = [d.strip() for d in spec.split(",") if d.strip()]
    if not ids or not all(d.isdigit() for d in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--devices {spec}: expected distinct GPU indices, e.g. 0,1,2,3")
    found = torch.cuda.device_count()
    if max(map(int, ids)) >= found:
        raise UsageError(f"--devices {spec}: this machine has {found} CUDA device(s)")
    return tuple(ids)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = embedded_config(args, argv, args.out / "base", workers=args.loader_workers)  # --workers: tuning workers
    if args.lr_find:
        lr_find(base, LrFindConfig(args.lr_steps, args.lr_min, args.lr_max), args.out / "lr_find")
        return 0
    for flag, value, low in (("--trials", args.trials, 1), ("--workers", args.workers, 1),
                             ("--startup-trials", args.startup_trials, 0), ("--heartbeat", args.heartbeat, 1)):
        if value < low:
            raise UsageError(f"{flag} must be at least {low}, got {value}")
    objectives = tuple(args.objectives)
    if objectives not in OBJECTIVES:
        raise UsageError(f"--objectives {' '.join(objectives)}: expected 'fitness' or 'fitness latency'")
    if args.latency_iters < 1:
        raise UsageError(f"--latency-iters must be at least 1, got {args.latency_iters}")
    two = len(objectives) == 2
    if two and args.pruner not in (None, "none"):
        raise UsageError(f"--pruner {args.pruner}: Optuna's pruners judge one objective; with --objectives fitness "
                         "latency every trial runs to its last epoch (leave --pruner out)")
    tc = TuneConfig(base=base, space=SearchSpace.load(args.space), out=args.out, trials=args.trials, study=args.study,
                    storage=args.storage, sampler=args.sampler or ("nsga2" if two else "tpe"),
                    pruner=args.pruner or ("none" if two else "hyperband"), workers=args.workers,
                    devices=devices(args.devices, args.workers), seed=args.seed, startup=args.startup_trials,
                    heartbeat_s=args.heartbeat, objectives=objectives, latency=LatencyConfig(iters=args.latency_iters))
    print(f"study {tc.study}: {len(tc.space.params)} values searched ({', '.join(p.name for p in tc.space.params)}); "
          f"{tc.trials} trials of {base.epochs} epochs; objectives {', '.join(objectives)} ({tc.sampler}); "
          f"storage {tc.storage or tc.out / 'study.journal'}")
    code, best = search(tc)
    print(f"best: {json.dumps(best)}; {tc.out / 'report.html'}, {tc.out / 'best_hyp.yaml'}" if best else
          f"no finished trial yet; {tc.out / 'trials.csv'}")
    return code


if __name__ == "__main__":
    cli.run(main)
