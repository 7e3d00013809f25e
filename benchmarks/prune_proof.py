"""Does slimming keep accuracy where a model has slack? Two tasks, one rulebook.

    python benchmarks/prune_proof.py --out DIR [--task person|synthetic|both] [--budget 10] [--steps 1] [--target 0.6]

The synthetic target met (docs/BENCHMARKS.md, slimming rounds 9b-11; ~1.5 h on 2 cores; 58 minutes on round
13's newer CPU, where --strategy taylor and l1 both end at 0.89-0.90 of that CPU's baseline):
    python benchmarks/prune_proof.py --out DIR --task synthetic --synthetic-images 1000 --synthetic-epochs 20 \
        --start-rewind-epochs 10 --budget 20 --baseline-recipes rewind --curve-epochs 0

Tasks:
  ccp        ../shared/datasets/ccp (real street-fashion photos, 7 classes); starting weights: yolov5n.pt
             trained on it with make train's recipe (10 epochs at 320, or --ccp-start); its latency target is
             the one-thread ratio.
  person     coco128 reduced to its person boxes (train2017 -> train, val2017 -> val, images without
             people kept as background), built under DIR/person/data from ../shared (symlinked images);
             starting weights: the official yolov5n.pt, its person head rows kept (head transfer).
  synthetic  the embedded 12-class competition set (--synthetic-images, seed 0: the demo's set), generated
             under DIR; starting weights: yolov5n.pt trained on it with the demo's recipe (sliced 320,
             validated at 960; DIR/synthetic/start.pt is reused when present).

Rules (the same for both): the baseline is the best of the starting weights as they are and the same
weights fine-tuned for B = --budget epochs with each recipe (configs/hyp/finetune.yaml, rewind.yaml).
The pruned model and the uniform control each spend at most 1.5 B epochs: K = --steps steps to --target x
GFLOPs (at 384x640, each step re-planned on the model it starts from: python -m prune --gflops), each
followed by --step-epochs recovery epochs (recover.yaml; none with one step), then the rest as fine-tuning
with the recipe that served the baseline (rewind.yaml's training-schedule rate where the rewound baseline
won, recover.yaml otherwise; distilled from the unpruned model on the synthetic task; not
on the person task, whose COCO teacher pulls objectness away from "person only"). ``pruned`` uses --strategy
(default l1: one global threshold on filter L1 norms relative to their layer's mean, widths rounded to
--round-to 16; taylor: the same on each channel's first-order loss change over 128 training images;
gamma: network slimming's global |gamma|), ``uniform`` the same share of every layer by filter
L1 norm (rounded to 8: at 16 one share per layer jumps from 0.66 to 0.36 x yolov5n's GFLOPs). The curve
prunes one-shot to 0.8/0.6/0.5/0.4 x GFLOPs with each strategy and fine-tunes --curve-epochs. Removed
channels are compensated by least-squares reconstruction (the pruning default) on 64 training images.

Writes DIR/TASK/summary.json (keys in the issue; ``ort_latency_ratio`` is the ratio of the rounds' medians,
ONNX Runtime on all cores, ``ort_latency_ratio_per_round`` each round's ratio, so a slow spell shows as a spread;
``ort_latency_ratio_single_thread`` the same on one thread, informative: it does not move with what a shared
machine gives the second core, docs/BENCHMARKS.md, slimming round 15), DIR/TASK/data.yaml,
curve.png, and each run's folder.

The ccp run of docs/BENCHMARKS.md (the unlabelled photos as extra recovery data, recover.yaml from the start):
    python benchmarks/prune_proof.py --out DIR --task ccp --strategy taylor --ccp-start runs/ccp/best.pt --budget 4 \
        --curve-epochs 2 --finetune-hyp recover --unlabeled ../shared/datasets/ccp/unlabeled/images
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.data.config import load_data_config  # noqa: E402
from detect.evaluate import DEFAULT_BATCH  # noqa: E402
from detect.hyp import load_hyp  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.model import count_gflops  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402
from detect.train.builders import build_train_model  # noqa: E402
from detect.weights import atomic_save, load_model, make_checkpoint  # noqa: E402
from prune.config import PruneConfig  # noqa: E402
from prune.importance import estimator  # noqa: E402
from prune.pipeline import adaptive_finetune, calibration_batch, evaluate, onnx_latency_rounds  # noqa: E402
from prune.surgery import plan, ratio_for_gflops, remove  # noqa: E402

SHAPE = (384, 640)
STRATEGY_LABELS = {"l1": "global filter L1 (relative to its layer)", "gamma": "network slimming (global |gamma|)",
                   "taylor": "global Taylor loss change (relative to its layer)", "uniform": "uniform (filter L1)"}
CURVE = (0.8, 0.6, 0.5, 0.4)
FINETUNE_HYP = REPO / "configs/hyp/finetune.yaml"  # the baseline's fine-tuning
RECOVER_HYP = REPO / "configs/hyp/recover.yaml"  # pruned models' recovery between steps
REWIND_HYP = REPO / "configs/hyp/rewind.yaml"  # pruned models' fine-tuning after the last step
UNIFORM_ROUND_TO = 8  # one share per layer at 16 cannot land near 0.6x (0.656 or 0.362 of yolov5n's GFLOPs)
BASELINE_RECIPES = {"ft": FINETUNE_HYP, "rewind": REWIND_HYP}  # recipe -> hyp, run in DIR/TASK/baseline_<recipe>


# --------------------------------------------------------------------------- data
def person_data(out: Path) -> Path:
    """coco128 with class-0 boxes only: images symlinked, labels rewritten; data.yaml returned."""
    src = shared_dir() / "datasets/coco128"
    for split in ("train2017", "val2017"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for img in sorted((src / "images" / split).glob("*.jpg")):
            link = out / "images" / split / img.name
            if not link.exists():
                os.symlink(img.resolve(), link)
            label = src / "labels" / split / f"{img.stem}.txt"
            lines = label.read_text().splitlines() if label.is_file() else []
            keep = [ln for ln in lines if ln.split() and ln.split()[0] == "0"]
            (out / "labels" / split / f"{img.stem}.txt").write_text("".join(f"{ln}\n" for ln in keep))
    (out / "data.yaml").write_text("path: .\ntrain: images/train2017\nval: images/val2017\nnames: [person]\n")
    return out / "data.yaml"


def synthetic_data(out: Path, images: int) -> Path:
    from detect.data.synthetic import generate

    return out / "data.yaml" if (out / "data.yaml").is_file() else generate(out, images=images, seed=0)


# --------------------------------------------------------------------------- runs
class Task:
    def __init__(self, name: str, root: Path, data: Path, img: int, val_img: int, sets: dict, distill: bool = True):
        self.name, self.root, self.data, self.img, self.val_img, self.sets = name, root, data, img, val_img, sets
        self.distill = distill  # recover from the unpruned model as teacher
        self.finetune_hyp = RECOVER_HYP  # the pruned models' fine-tuning: set from the baseline's best recipe
        self.prune_data = data  # what the pruned models train on: data, or data plus pseudo-labelled photos
        self.cfg = load_data_config(data)
        from detect.data.labels import scan_split

        self.val, _ = scan_split(self.cfg, "val", progress=False)

    def score(self, model) -> float:
        return evaluate(model, self.val, self.cfg.names, self.val_img, DEFAULT_BATCH, 2, "cpu")["map50_95"]

    def train(self, weights: Path, epochs: int, out: Path, teacher: Path | None = None, hyp_file=FINETUNE_HYP):
        hyp = load_hyp(hyp_file, {"nominal_batch": 16, **self.sets})
        config = TrainConfig(data=str(self.data), weights=str(weights), model=str(weights), teacher=teacher and str(teacher),
                             img=self.img, val_img=self.val_img, epochs=epochs, batch=16, out=out, workers=2,
                             device="cpu", val_interval=epochs, hyp=hyp, quiet=True)
        return fit(config)

    def prune_config(self, weights: Path, out: Path, strategy: str, ratio: float | None, steps: int, step_epochs: int,
                     gflops: float | None = None, round_to: int = 8, at_most: bool = False, val_interval: int = 1):
        """``val_interval``: the proof passes each run's length, so a pruned model, like the baseline (``train``),
        is its last epoch's and not the best of many validations on the split that scores it."""
        sets = [f"{k}={v}" for k, v in {"nominal_batch": 16, **self.sets}.items()]
        return PruneConfig(weights=weights, data=str(self.prune_data), out=out, strategy=strategy, ratio=ratio, gflops=gflops,
                           gflops_at_most=at_most and gflops is not None, steps=steps, step_epochs=step_epochs,
                           distill=self.distill, img=self.img,
                           val_img=self.val_img, batch=16, round_to=round_to, hyp=str(RECOVER_HYP),
                           finetune_hyp=str(self.finetune_hyp), set=sets, latency_iters=0,
                           val_interval=max(1, val_interval))


def starting_weights(task: Task, args) -> Path:
    """person: yolov5n.pt with its person rows (head transfer); synthetic: yolov5n.pt trained on the set."""
    path = task.root / "start.pt"
    if path.is_file():
        return path
    official = shared_dir() / "weights/yolov5n.pt"
    if task.name == "ccp":  # make train's recipe on ccp: 10 epochs at 320, batch 16, the default hyperparameters
        if args.ccp_start:
            path.write_bytes(Path(args.ccp_start).read_bytes())
            return path
        result = fit(TrainConfig(data=str(task.data), weights=str(official), model="yolov5n", img=task.img,
                                 epochs=10, batch=16, out=task.root / "start", workers=2, device="cpu", quiet=True))
        path.write_bytes(Path(result.best).read_bytes())
        return path
    if task.name == "person":
        config = TrainConfig(data=str(task.data), weights=str(official), img=task.img)
        model, note = build_train_model(config, task.cfg.names)
        print(f"person start: {note}")
        atomic_save(make_checkpoint(model, task.cfg.names), path)
        return path
    hyp = load_hyp(None, {"nominal_batch": 8, **task.sets})
    result = fit(TrainConfig(data=str(task.data), weights=str(official), model="yolov5n", img=task.img,
                             val_img=task.val_img, epochs=args.synthetic_epochs, batch=8, out=task.root / "start",
                             workers=2, device="cpu", val_interval=args.synthetic_epochs, hyp=hyp, quiet=True))
    best = Path(result.best)
    if args.start_rewind_epochs:  # a start nearer convergence (rounds 8-10: the demo's 20 epochs, then 10 rewound)
        best = Path(task.train(best, args.start_rewind_epochs, task.root / "start_rewind", hyp_file=REWIND_HYP).best)
    path.write_bytes(best.read_bytes())
    return path


def strategy_run(task: Task, base: Path, strategy: str, round_to: int, args) -> dict:
    """Iterative pruning to the GFLOPs target, then fine-tuning, within 1.5 B epochs in all."""
    model, _ = load_model(base, "cpu", fuse=False)
    budget = math.floor(1.5 * args.budget)
    step_epochs = 0 if args.steps == 1 else min(args.step_epochs, budget // args.steps)  # one step: no recovery
    c = task.prune_config(base, task.root / strategy, strategy, None, args.steps, step_epochs, gflops=args.target,
                          round_to=round_to, at_most=args.gflops_at_most, val_interval=budget)
    c.finetune_epochs = budget - step_epochs * args.steps
    from prune.pipeline import run

    t0 = time.perf_counter()
    done = task.root / strategy / "report.json"
    report = json.loads(done.read_text()) if done.is_file() else None
    key = lambda r: (r["weights"], r.get("gflops_target"), len(r["steps"]), r["finetune_epochs"],  # noqa: E731
                     r.get("finetune_hyp"), r["round_to"], r.get("gflops_at_most", False), r.get("val_interval", 1),
                     r["data"])
    if report is not None and key(report) == (str(base), args.target, args.steps, c.finetune_epochs, c.finetune_hyp,
                                              round_to, args.gflops_at_most, c.val_interval, c.data):
        print(f"{strategy}: reusing {done}")  # a finished run with these settings (delete the folder to redo it)
    else:
        report = run(c)
    final = task.root / strategy / "pruned.pt"
    pruned, _ = load_model(final, "cpu", fuse=False)
    return {"weights": final, "map50_95": task.score(pruned), "epochs": c.finetune_epochs + step_epochs * args.steps,
            "finetune_hyp_used": report.get("finetune_hyp_used"), "collapsed": report.get("finetune_collapsed"),
            "kept": report.get("kept"),
            "ratio": report["steps"][-1]["share"], "gflops_ratio": count_gflops(pruned, SHAPE) / count_gflops(model, SHAPE),
            "steps": report["steps"], "wall_s": time.perf_counter() - t0}


def curve(task: Task, base: Path, strategies: dict[str, int], args) -> dict:
    """mAP50-95 after the same short distilled fine-tuning, one-shot pruned to each GFLOPs ratio.

    Saved to TASK/curve/points.json and reused by a later run with the same baseline and --curve-epochs."""
    cache = task.root / "curve" / "points.json"
    key = {"baseline": str(base), "curve_epochs": args.curve_epochs, "finetune_hyp": str(task.finetune_hyp), "last_epoch": True,
           "adaptive": True, "data": str(task.prune_data),
           "strategies": strategies, "gflops_at_most": args.gflops_at_most}
    out = {s: {} for s in strategies}
    if cache.is_file() and json.loads(cache.read_text()).get("key") == key:
        out = json.loads(cache.read_text())["points"]
        print(f"curve: reusing the points in {cache}")
    model, _ = load_model(base, "cpu", fuse=False)
    calib = calibration_batch(task.cfg, task.img, 64)
    for strategy, round_to in strategies.items():
        todo = [t for t in CURVE if str(t) not in out[strategy]]
        scores = None
        if strategy == "taylor" and todo:  # as python -m prune estimates them: 128 training images, recover.yaml's gains
            scores = estimator(task.cfg, task.img, load_hyp(RECOVER_HYP, {"nominal_batch": 16, **task.sets}))(model)
        for target in todo:
            ratio = ratio_for_gflops(model, strategy, target, SHAPE, round_to=round_to, at_most=args.gflops_at_most,
                                     scores=scores)
            plans, _ = plan(model, strategy, ratio, None, 0.1, round_to, scores=scores)
            pruned = remove(copy.deepcopy(model), plans, calib, compensation="reconstruct")
            folder = task.root / "curve" / f"{strategy}_{target}"
            untuned = folder / "pruned_untuned.pt"
            atomic_save(make_checkpoint(pruned, task.cfg.names), untuned)
            c = task.prune_config(base, folder, strategy, ratio, 1, 0, round_to=round_to, val_interval=args.curve_epochs)
            c.finetune_epochs = args.curve_epochs
            surgery, recipe, collapsed = task.score(pruned), None, None
            try:  # as python -m prune fine-tunes: a recipe that collapses in its first epoch gives way to recover.yaml
                result, recipe, collapsed = adaptive_finetune(c, untuned, surgery)
                tuned = result.summary["map50_95"]
            except FloatingPointError as e:  # a collapsed prune can diverge: record it, keep going
                print(f"curve {strategy} {target}: fine-tuning diverged ({e})", flush=True)
                tuned = None
            out[strategy][str(target)] = {"gflops_ratio": count_gflops(pruned, SHAPE) / count_gflops(model, SHAPE),
                                          "map50_95_pruned": surgery, "map50_95": tuned,
                                          "finetune_hyp_used": recipe and os.path.relpath(recipe, REPO),
                                          "collapsed": collapsed}
            print(f"curve {strategy} {target}: {out[strategy][str(target)]}", flush=True)
            cache.write_text(json.dumps({"key": key, "points": out}, indent=2))
    return out


def plot_curve(path: Path, points: dict, baseline: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for strategy, by_target in points.items():
        pts = sorted((v["gflops_ratio"], v["map50_95"]) for v in by_target.values() if v["map50_95"] is not None)
        ax.plot(*zip(*pts), "o-", label=STRATEGY_LABELS[strategy])
    ax.axhline(baseline, color="k", ls="--", lw=1, label="baseline")
    ax.axhline(0.9 * baseline, color="grey", ls=":", lw=1, label="0.9 x baseline")
    ax.set(xlabel="GFLOPs ratio at 384x640", ylabel="mAP50-95", title="Speed / accuracy after the same fine-tuning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def detect_val_check(root: Path, summary: dict) -> dict:
    """Each model's mAP50-95 from ``python -m detect.val`` on the written data.yaml (the user's path, run as a
    user runs it), against the figure the summary claims."""
    import subprocess

    out = {}
    for key in ("baseline", "pruned", "uniform"):
        report = root / f"detect_val_{key}.json"
        cmd = [sys.executable, "-m", "detect.val", "--weights", str(root / summary[f"{key}_weights"]), "--data",
               str(root / "data.yaml"), "--img", str(summary["img"]), "--device", "cpu", "--json", str(report)]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
        got = json.loads(report.read_text())["map50_95"]
        out[key] = {"detect_val": got, "summary": summary[f"{key}_map50_95"],
                    "agrees": abs(got - summary[f"{key}_map50_95"]) <= 0.005}
    return out


def unlabeled_data(task: Task, base: Path, args) -> tuple[Path, dict]:
    """The pruned models' training set with the unlabelled photos added: the baseline labels them (each class's
    boxes kept at --pseudo-precision on val; a photo with uncertain boxes left out, or kept with them as ignore
    regions: --pseudo-uncertain, detect.pseudo), and its soft outputs on them are distilled as on every batch.
    Reused while the baseline and the settings are the same."""
    from detect.pseudo.label import PseudoConfig, label

    out = task.root / "pseudo"
    done = out / "pseudo.json"
    summary = json.loads(done.read_text()) if done.is_file() else {}
    settings = ([str(base)], args.pseudo_precision, args.pseudo_uncertain)
    if (summary.get("weights"), summary.get("precision"), summary.get("uncertain")) != settings:
        summary = label(PseudoConfig(weights=[str(base)], source=str(args.unlabeled), data=str(task.data), out=out,
                                     img=[task.img], precision=args.pseudo_precision, uncertain=args.pseudo_uncertain))
    keys = ("images", "labelled", "background", "ignore_regions", "precision", "uncertain")
    return Path(summary["data"]), {k: summary[k] for k in keys}


def recovery_setup(task: Task, base: Path, tuned: dict, args) -> dict | None:
    """The pruned models' recipe and data; returns what --unlabeled added (or None)."""
    # the pruned models fine-tune at the rate that served the baseline: rewound where the data carried lr0 0.01
    # (synthetic: 0.642 vs 0.572), gentle where it pulled the start down (person: 0.173, and pruned models
    # fine-tuned at that rate fell to 0.000; docs/BENCHMARKS.md, slimming round 6)
    task.finetune_hyp = REWIND_HYP if base == tuned.get("baseline_rewind", (None,))[0] else RECOVER_HYP
    if args.finetune_hyp != "auto":  # chosen from an earlier run's measurement (ccp: rewind collapsed every prune)
        task.finetune_hyp = {"rewind": REWIND_HYP, "recover": RECOVER_HYP}[args.finetune_hyp]
    if not args.unlabeled:
        return None
    task.prune_data, unlabeled = unlabeled_data(task, base, args)
    return unlabeled


def run_task(name: str, args) -> dict:
    root = args.out / name
    root.mkdir(parents=True, exist_ok=True)
    if name == "person":
        data = person_data(root / "data")
        # no teacher: the head-transferred model's objectness fires on every COCO object, and distilling it
        # took a 0.6x recovery from 0.054 to 0.026 (docs/BENCHMARKS.md, slimming round 5)
        task = Task(name, root, data, 320, 320, {}, distill=False)
    elif name == "ccp":  # the real clothing set: 803 train / 200 val photos of 550x830, one person each
        data = shared_dir() / "datasets/ccp/data.yaml"
        task = Task(name, root, data, 320, 320, {})
    else:
        data = synthetic_data(root / "data", args.synthetic_images)
        task = Task(name, root, data, 320, 960, {"slice": True})
    (root / "data.yaml").write_text(Path(data).read_text().replace("path: .", f"path: {Path(data).parent.resolve()}"))
    start = starting_weights(task, args)
    start_map = task.score(load_model(start, "cpu", fuse=False)[0])
    tuned = {}  # the same B epochs from the start with each fine-tuning recipe; the baseline is the best of all
    for folder, hyp_file in ((f"baseline_{r}", BASELINE_RECIPES[r]) for r in args.baseline_recipes):
        best, log = root / folder / "weights" / "best.pt", root / folder / "results.csv"
        if not (best.is_file() and log.is_file() and log.read_text().count("\n") == args.budget + 1):
            best = Path(task.train(start, args.budget, root / folder, hyp_file=hyp_file).best)  # else reused
        tuned[folder] = (best, task.score(load_model(best, "cpu", fuse=False)[0]))
    tuned_path, tuned_map = max(tuned.values(), key=lambda t: t[1])
    base, base_map, base_epochs = (start, start_map, 0) if start_map >= tuned_map else (tuned_path, tuned_map, args.budget)
    unlabeled = recovery_setup(task, base, tuned, args)
    print(f"{name}: start {start_map:.4f}, fine-tuned {', '.join(f'{k} {v[1]:.4f}' for k, v in tuned.items())}; "
          f"baseline {base}", flush=True)
    rounding = {args.strategy: args.round_to, "uniform": UNIFORM_ROUND_TO}
    runs = {s: strategy_run(task, base, s, r, args) for s, r in rounding.items()}
    pruned = runs[args.strategy]
    latency = latency_fields({"baseline": base, "pruned": pruned["weights"], "uniform": runs["uniform"]["weights"]},
                             root, args)
    points = curve(task, base, rounding, args) if args.curve_epochs > 0 else {}
    rel = lambda p: os.path.relpath(p, root)  # noqa: E731
    summary = {
        "task": name, "img": task.val_img, "train_img": task.img, "budget_epochs": args.budget,
        "baseline_map50_95": base_map, "baseline_start_map50_95": start_map, "baseline_finetuned_map50_95": tuned_map,
        "baseline_recipes": {k: v[1] for k, v in tuned.items()}, "finetune_hyp": os.path.relpath(task.finetune_hyp, REPO),
        "strategy": args.strategy, "round_to": rounding,
        "pruned_map50_95": pruned["map50_95"], "uniform_map50_95": runs["uniform"]["map50_95"],
        "gflops_ratio": pruned["gflops_ratio"], "uniform_gflops_ratio": runs["uniform"]["gflops_ratio"],
        **latency,
        "epochs_total": {"baseline": base_epochs, "pruned": pruned["epochs"],
                         "uniform": runs["uniform"]["epochs"]},
        "baseline_weights": rel(base), "pruned_weights": rel(pruned["weights"]),
        "uniform_weights": rel(runs["uniform"]["weights"]),
        "steps": {s: runs[s]["steps"] for s in runs}, "channel_ratio": {s: runs[s]["ratio"] for s in runs},
        # the recovery each run ended with: rewind.yaml where the baseline's fine-tuning chose it, recover.yaml
        # where that collapsed in the first epoch (python -m prune's guard), and which model pruned.pt is
        "finetune_hyp_used": {s: runs[s]["finetune_hyp_used"] for s in runs},
        "finetune_collapsed": {s: runs[s]["collapsed"] for s in runs}, "kept": {s: runs[s]["kept"] for s in runs},
        "curve": points, "target_gflops": args.target, "gflops_at_most": args.gflops_at_most,
        # the pruned models' extra training images (--unlabeled; the baseline never saw them) and the recipe rule
        "unlabeled": unlabeled, "finetune_hyp_rule": args.finetune_hyp,
        # training reproduces to the bit on one CPU but not across CPU models (docs/BENCHMARKS.md, round 13)
        "machine": machine_info(), "date": time.strftime("%Y-%m-%d"),
    }
    judge(summary, name, base_map)
    summary["detect_val_check"] = detect_val_check(root, summary)
    if points:
        plot_curve(root / "curve.png", points, base_map)
    (root / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("steps", "curve")}, indent=2), flush=True)
    return summary


def latency_fields(weights: dict[str, Path], root: Path, args) -> dict:
    """The summary's latency keys: ONNX Runtime at SHAPE, batch 1, interleaved rounds of fresh processes."""
    timed = onnx_latency_rounds(weights, root, SHAPE, args.latency_iters, rounds=args.latency_rounds,
                                runtimes=("ort", "ort-1thread"))
    lat_rounds = timed["ort"]
    lat, one_thread = ({name: statistics.median(ms) for name, ms in timed[r].items()} for r in ("ort", "ort-1thread"))
    return {
        "ort_latency_ratio": lat["pruned"] / lat["baseline"],
        "uniform_ort_latency_ratio": lat["uniform"] / lat["baseline"], "ort_latency_ms": lat,
        # each round's ratio (the models run one after the other in a round): a slow spell shows as a spread
        "ort_latency_ratio_per_round": {m: [x / b for x, b in zip(lat_rounds[m], lat_rounds["baseline"])]
                                        for m in ("pruned", "uniform")},
        "ort_latency_rounds_ms": lat_rounds,
        # informative for person/synthetic, the target's for ccp: one thread, what an image costs a deployment
        # running a process per core
        "ort_latency_ratio_single_thread": {m: one_thread[m] / one_thread["baseline"] for m in ("pruned", "uniform")},
        "ort_latency_ms_single_thread": one_thread,
        "latency_date": time.strftime("%Y-%m-%d %H:%M"),
    }


def retime(name: str, args) -> dict:
    """Time a finished run's three models again (a shared machine's busy spell lands on the figures) and
    rewrite its summary; the figures it replaces are kept under ``latency_before_retime``."""
    root = args.out / name
    path = root / "summary.json"
    if not path.is_file():
        raise SystemExit(f"--retime: no {path}: run the proof first")
    summary = json.loads(path.read_text())
    weights = {m: root / summary[f"{m}_weights"] for m in ("baseline", "pruned", "uniform")}
    latency = latency_fields(weights, root, args)
    summary["latency_before_retime"] = {k: summary.get(k) for k in latency}
    summary.update(latency)
    judge(summary, name, summary["baseline_map50_95"])
    path.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("ort_latency_ratio", "ort_latency_ratio_single_thread",
                                               "meets_target", "uniform_meets_target", "meets_stretch")}, indent=2))
    return summary


def judge(summary: dict, task: str, base_map: float) -> None:
    """``meets_target`` for the pruned model and the uniform control: 0.6x GFLOPs, 0.9 of the baseline's mAP,
    0.7x latency; ``meets_stretch``: 0.5x GFLOPs within 0.015 of the baseline. ccp's latency is the one-thread ratio: the all-core one moves with this machine's second core."""
    lat_key = (lambda m: summary["ort_latency_ratio_single_thread"][m]) if task == "ccp" else (  # noqa: E731
        lambda m: summary["ort_latency_ratio" if m == "pruned" else "uniform_ort_latency_ratio"])
    summary["meets_target"] = (summary["gflops_ratio"] <= 0.6 and summary["pruned_map50_95"] >= 0.9 * base_map
                               and lat_key("pruned") <= 0.7)
    summary["uniform_meets_target"] = (summary["uniform_gflops_ratio"] <= 0.6 and summary["uniform_map50_95"]
                                       >= 0.9 * base_map and lat_key("uniform") <= 0.7)
    # the stretch: half the GFLOPs within 0.015 of the baseline (run with --target 0.5)
    summary["meets_stretch"] = summary["gflops_ratio"] <= 0.5 and summary["pruned_map50_95"] >= base_map - 0.015


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--task", choices=["person", "synthetic", "ccp", "both"], default="both",
                   help="both: person and synthetic")
    p.add_argument("--ccp-start", type=Path, default=None,
                   help="ccp: starting weights already trained with make train's recipe (else trained, 10 epochs)")
    p.add_argument("--budget", type=int, default=10, help="B: the baseline's fine-tuning epochs")
    p.add_argument("--target", type=float, default=0.6, help="GFLOPs ratio the pruned models aim at")
    p.add_argument("--strategy", choices=["l1", "taylor", "gamma"], default="l1",
                   help="the pruned model's criterion (the uniform control always runs beside it)")
    p.add_argument("--round-to", type=int, default=16,
                   help="the pruned model's widths: multiples of 16 keep ONNX Runtime's AVX-512 kernels in their "
                   "blocked layout (docs/BENCHMARKS.md, slimming round 7)")
    p.add_argument("--gflops-at-most", action="store_true",
                   help="never above --target: where rounding jumps over [target - 0.01, target], take the point "
                   "below (default: the closest, up to 0.01 above; uniform at 8 lands at 0.601)")
    p.add_argument("--steps", type=int, default=1,
                   help="K (round 6 ran 1; round 5 ran 3 with recover.yaml fine-tuning, docs/BENCHMARKS.md)")
    p.add_argument("--step-epochs", type=int, default=2)
    p.add_argument("--curve-epochs", type=int, default=3)
    p.add_argument("--latency-iters", type=int, default=200, help="ONNX Runtime runs per model, over --latency-rounds")
    p.add_argument("--latency-rounds", type=int, default=10,
                   help="interleaved rounds, each model in a fresh process per round (5 rounds of 20 once read the "
                   "baseline at 22.3 ms where 10 rounds read 14.6-16.1: docs/BENCHMARKS.md, slimming round 12)")
    p.add_argument("--synthetic-images", type=int, default=200, help="the demo's set: 200 images, seed 0")
    p.add_argument("--synthetic-epochs", type=int, default=40, help="training of the synthetic starting weights")
    p.add_argument("--start-rewind-epochs", type=int, default=0,
                   help="then this many more with rewind.yaml (rounds 8-11: --synthetic-epochs 20 --start-rewind-epochs 10)")
    p.add_argument("--baseline-recipes", nargs="+", choices=list(BASELINE_RECIPES), default=list(BASELINE_RECIPES),
                   help="the fine-tuning recipes the baseline is the best of (finetune.yaml, rewind.yaml); rewind "
                   "won every synthetic round")
    p.add_argument("--finetune-hyp", choices=["auto", "rewind", "recover"], default="auto",
                   help="the pruned models' recipe; auto: rewind.yaml where the rewound baseline won, else recover.yaml, "
                   "and python -m prune's guard falls back to recover.yaml where the first epoch collapses")
    p.add_argument("--unlabeled", type=Path, default=None,
                   help="unlabelled photos (ccp: ../shared/datasets/ccp/unlabeled/images) the pruned models also train "
                   "on: pseudo-labelled by the baseline, distilled as every batch")
    p.add_argument("--pseudo-precision", type=float, default=0.9, help="with --unlabeled: detect.pseudo's --precision")
    p.add_argument("--pseudo-uncertain", choices=["leave-out", "ignore"], default="leave-out",
                   help="with --unlabeled: detect.pseudo's --uncertain (a photo with uncertain boxes left out, or kept "
                   "with them as ignore regions; on ccp leave-out won a one-epoch comparison, docs/BENCHMARKS.md)")
    p.add_argument("--retime", action="store_true",
                   help="only time the three models of a finished run in --out again and rewrite its summary")
    args = p.parse_args()
    for name in (("person", "synthetic") if args.task == "both" else (args.task,)):
        retime(name, args) if args.retime else run_task(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
