"""Does the search pay? TPE + Hyperband against random search at one budget of trainings, the defaults beside.

    python benchmarks/tune_compare.py --data ../shared/datasets/ccp/data.yaml --weights ../shared/weights/yolov5n.pt \
        --img 320 --epochs 5 --trials 12 --full-epochs 10 --out runs/tune-compare

Each arm is one study (``detect.tune``'s library: ``search``) with the same space, trials and epochs; both
start from the base hyperparameters (their trial 0, so the defaults at the trial length are in each).
Then each arm's best values and the defaults are trained for ``--full-epochs`` from the same weights and
seed, and scored at their last epoch. Writes OUT/summary.json and OUT/summary.md (arms, best fitness, wall
time, the full-schedule mAP50-95 of each). The val split chooses and scores here: a gain smaller than the
seed-to-seed spread of the recipe is no gain (run the defaults with two --seed values to see it).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detect.hyp import load_hyp  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402
from detect.tune.objective import TuneConfig  # noqa: E402
from detect.tune.space import SearchSpace  # noqa: E402
from detect.tune.workers import search  # noqa: E402

ARMS = {"tpe_hyperband": ("tpe", "hyperband"), "random": ("random", "none")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--weights", default="")
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--epochs", type=int, default=5, help="each trial's epochs")
    p.add_argument("--trials", type=int, default=12, help="per arm")
    p.add_argument("--full-epochs", type=int, default=10, help="the retraining of each arm's best and the defaults")
    p.add_argument("--space", type=Path, default=REPO / "configs/tune/default.yaml")
    p.add_argument("--workers", type=int, default=1, help="tuning worker processes per arm")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    base = TrainConfig(data=args.data, weights=args.weights, model="yolov5n" if not args.weights else None, img=args.img,
                       batch=args.batch, epochs=args.epochs, device="cpu", workers=2, quiet=True, hyp=load_hyp())
    space = SearchSpace.load(args.space)
    rows = {}
    for arm, (sampler, pruner) in ARMS.items():
        tc = TuneConfig(base=base, space=space, out=args.out / arm, trials=args.trials, study=arm, sampler=sampler,
                        pruner=pruner, workers=args.workers)
        _, best = search(tc)
        # the trials' own seconds (trials.csv), summed: a resumed study's search returns at once
        trials = list(csv.DictReader(open(args.out / arm / "trials.csv")))
        rows[arm] = {"best_fitness": best.get("fitness"), "best_trial": best.get("trial"), "params": best.get("params"),
                     "search_minutes": sum(float(t["seconds"] or 0) for t in trials) / 60}
    full = dataclasses.replace(base, epochs=args.full_epochs, val_interval=args.full_epochs)
    retrain = {"defaults": {}, **{arm: rows[arm]["params"] or {} for arm in ARMS}}
    trained = []  # (hyperparameters, options, name): an arm whose best is the defaults (or another arm's best)
    for name, params in retrain.items():  # is not trained twice: the same values train bit-equal on one CPU
        changes, options = SearchSpace.split(params)
        hyp = base.hyp.replace(**changes)
        same = next((n for h, o, n in trained if h == hyp and o == options), None)
        if same is not None:
            rows.setdefault(name, {}).update({**{k: rows[same][k] for k in ("full_map50_95", "full_minutes")},
                                              "full_same_as": same})
            continue
        config = dataclasses.replace(full, out=args.out / "full" / name, hyp=hyp, **options)
        t0 = time.perf_counter()
        result = fit(config)
        trained.append((hyp, options, name))
        rows.setdefault(name, {}).update({"full_map50_95": result.summary.get("map50_95"),
                                          "full_minutes": (time.perf_counter() - t0) / 60})
    summary = {"data": args.data, "img": args.img, "trial_epochs": args.epochs, "trials": args.trials,
               "full_epochs": args.full_epochs, "arms": rows, "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = ["| arm | best fitness (trials) | trial min (summed) | full-schedule mAP50-95 | full min |", "| --- | --- | --- | --- | --- |"]
    for name, r in rows.items():
        fit_ = f"{r['best_fitness']:.4f}" if r.get("best_fitness") is not None else "—"
        same = f" (the values of {r['full_same_as']}: not trained again)" if r.get("full_same_as") else ""
        lines.append(f"| {name} | {fit_} | {r.get('search_minutes', 0):.1f} | {r['full_map50_95']:.4f}{same} | "
                     f"{r['full_minutes']:.1f} |")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
