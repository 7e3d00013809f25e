"""The competition workflow on ccp, each arm against its own control at the same epochs (issue 34's measurement).

    python benchmarks/workflow_ccp.py --out runs/workflow-ccp --epochs 10 [--arms pseudo pseudo_ignore pseudo_tta kfold]
    # the cheaper pseudo-label round: 3 epochs fine-tuning a model make train made on ccp
    python benchmarks/workflow_ccp.py --out runs/workflow-ft --weights runs/ccp/best.pt \
        --hyp configs/hyp/finetune.yaml --epochs 3 --arms pseudo pseudo_ignore

- control: the recipe on the 803 labelled images (--weights, default yolov5n.pt; --hyp, --img, --epochs, --seed);
  it is also the teacher.
- pseudo / pseudo_tta: the teacher labels ccp's 1094 unlabelled photos (``detect.pseudo.label``, --precision,
  without / with TTA), images with an uncertain box left out; the same recipe trains on labelled +
  pseudo-labelled images. pseudo_ignore: every photo kept, its uncertain boxes as ignore regions.
- kfold: ``detect.kfold.run_kfold`` with --folds; the fold models fused by WBF on val against the control,
  and the out-of-fold mAP against the control's val mAP.

Every model is scored on ccp's val split at --img (the trainer's validation). Writes OUT/summary.json and
OUT/summary.md; each arm is reused when its folder holds a finished run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detect import cli  # noqa: E402
from detect.data.config import load_data_config  # noqa: E402
from detect.data.labels import scan_split  # noqa: E402
from detect.evaluate import coco_results, predictor_detections  # noqa: E402
from detect.hyp import load_hyp  # noqa: E402
from detect.infer.config import InferenceConfig  # noqa: E402
from detect.infer.predictor import Predictor  # noqa: E402
from detect.kfold.run import KFoldConfig, run_kfold  # noqa: E402
from detect.machine import machine_info  # noqa: E402
from detect.metrics import evaluate  # noqa: E402
from detect.metrics.coco import coco_ground_truth  # noqa: E402
from detect.outputs import write_json  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.pseudo.label import PseudoConfig, label  # noqa: E402
from detect.train import TrainConfig, fit  # noqa: E402

ARMS = ("pseudo", "pseudo_ignore", "pseudo_tta", "kfold")


class Minutes:
    """Each arm's wall time, kept in OUT/minutes.json: a reused arm reports the run that trained it."""

    def __init__(self, out: Path):
        self.file = out / "minutes.json"
        self.seen = json.loads(self.file.read_text()) if self.file.is_file() else {}

    def __call__(self, arm: str, t0: float, fresh: bool) -> float | None:
        """None: reused from a run that kept no time."""
        if fresh:
            self.seen[arm] = (time.perf_counter() - t0) / 60
            write_json(self.seen, self.file)
        return self.seen.get(arm)


def trained(config: TrainConfig) -> dict:
    """The run's final metrics: read back when it finished before, else trained now."""
    done = config.out / "metrics.json"
    if not done.is_file():
        fit(config)
    m = json.loads(done.read_text())
    return {"map50_95": m["map50_95"], "map50": m["map50"], "weights": m["weights"]["last"]}


def ensemble_map(weights: list[str], data: str, img: int) -> float:
    """mAP50-95 on val of the models fused by WBF (detect.val --weights ... --fuse wbf)."""
    cfg = load_data_config(data)
    val, _ = scan_split(cfg, "val", progress=False)
    predictor = Predictor.from_weights(weights, [img], cli.select_device("cpu"),
                                       InferenceConfig(conf=0.001, iou=0.6, max_det=300, fuse="wbf"))
    dets, _ = predictor_detections(predictor, val, 16, 2)
    return evaluate(coco_ground_truth(val, cfg.names), coco_results(dets), cfg.names)["map50_95"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--precision", type=float, default=0.9)
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--arms", nargs="*", choices=ARMS, default=list(ARMS), help="none: the control alone")
    p.add_argument("--seed", type=int, default=0, help="every arm's seed (a second seed shows the recipe's spread)")
    p.add_argument("--weights", default=str(shared_dir() / "weights/yolov5n.pt"), help="every arm starts from these")
    p.add_argument("--hyp", default=None, help="hyperparameter YAML of every arm (default: the defaults)")
    args = p.parse_args()
    ccp = shared_dir() / "datasets/ccp"
    data = str(ccp / "data.yaml")
    recipe = TrainConfig(data=data, weights=args.weights, img=args.img, epochs=args.epochs,
                         batch=16, device="cpu", workers=2, quiet=True, val_interval=args.epochs, hyp=load_hyp(args.hyp),
                         seed=args.seed)
    rows, t0, minutes = {}, time.perf_counter(), Minutes(args.out)
    fresh = not (args.out / "control" / "metrics.json").is_file()
    control = trained(dataclasses.replace(recipe, out=args.out / "control"))
    rows["control"] = {**control, "minutes": minutes("control", t0, fresh)}
    for arm in (a for a in args.arms if a.startswith("pseudo")):
        t0 = time.perf_counter()
        folder = args.out / arm
        fresh = not (folder / "train" / "metrics.json").is_file()
        if not (folder / "pseudo" / "pseudo.json").is_file():
            label(PseudoConfig(weights=[control["weights"]], source=str(ccp / "unlabeled/images"), data=data,
                               out=folder / "pseudo", img=[args.img], precision=args.precision,
                               uncertain="ignore" if arm == "pseudo_ignore" else "leave-out",
                               inference=InferenceConfig(conf=0.001, iou=0.6, max_det=300, augment=arm == "pseudo_tta")))
        counts = json.loads((folder / "pseudo" / "pseudo.json").read_text())
        m = trained(dataclasses.replace(recipe, data=str(folder / "pseudo" / "data.yaml"), out=folder / "train"))
        rows[arm] = {**m, "images_labelled": counts["labelled"], "left_out": counts["left_out"],
                     "background": counts["background"], "ignore_regions": counts.get("ignore_regions", 0),
                     "minutes": minutes(arm, t0, fresh)}
    if "kfold" in args.arms:
        t0 = time.perf_counter()
        fresh = not all((args.out / "kfold" / f"fold{k}" / "oof.json").is_file() for k in range(args.folds))
        summary = run_kfold(KFoldConfig(base=recipe, out=args.out / "kfold", folds=args.folds))
        weights = (args.out / "kfold" / "ensemble.txt").read_text().split()
        rows["kfold"] = {"oof_map50_95": summary["oof"]["map50_95"], "fold_mean_map50_95": summary["fold_map50_95_mean"],
                         "ensemble_val_map50_95": ensemble_map(weights, data, args.img)}
        rows["kfold"]["minutes"] = minutes("kfold", t0, fresh)
    out = {"weights": args.weights, "hyp": args.hyp, "epochs": args.epochs, "img": args.img, "seed": args.seed,
           "precision": args.precision,
           "folds": args.folds, "arms": rows, "machine": machine_info(), "date": time.strftime("%Y-%m-%d")}
    (args.out / "summary.json").write_text(json.dumps(out, indent=2))
    lines = ["| arm | val mAP50-95 | against the control | minutes |", "| --- | --- | --- | --- |"]
    base = rows["control"]["map50_95"]
    for name, r in rows.items():
        m = r.get("map50_95", r.get("ensemble_val_map50_95"))
        took = "—" if r["minutes"] is None else f"{r['minutes']:.1f}"
        lines.append(f"| {name} | {m:.4f} | {m - base:+.4f} | {took} |")
    if "kfold" in rows:
        lines.append(f"\nOut-of-fold mAP50-95 {rows['kfold']['oof_map50_95']:.4f} (folds' mean "
                     f"{rows['kfold']['fold_mean_map50_95']:.4f}) against the control's val {base:.4f}.")
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
