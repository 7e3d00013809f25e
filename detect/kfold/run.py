"""K-fold training with out-of-fold predictions: ``run_kfold(KFoldConfig) -> summary``.

DIR/folds.json       each training image's fold (kept: a resumed run splits the same way)
DIR/foldK/           fold K's data.yaml (train.txt, val.txt), its training run, oof.json and metrics.json
DIR/oof.json         {"images": [{"file_name", "fold"}], "detections": [detect.predict --json records]}
DIR/oof_metrics.json COCO mAP over every training image from the model that did not see it, and each fold's
DIR/thresholds.json  each class's best-F1 confidence on the out-of-fold predictions (predict --conf-per-class)
DIR/ensemble.txt     the folds' best.pt, one per line: --weights $(cat DIR/ensemble.txt) --fuse wbf

A fold whose ``oof.json`` exists is not trained again; a fold stopped mid-training resumes from its last.pt.
Each fold validates only at its last epoch, so nothing about the held-out images chooses its weights and
the out-of-fold mAP is an honest estimate.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from detect.data.config import load_data_config
from detect.data.images import safe_name
from detect.data.labels import Sample, scan_split
from detect.data.meta import read_meta
from detect.errors import DataError, UsageError
from detect.evaluate import EvalConfig, run_eval
from detect.infer.thresholds import write_thresholds
from detect.kfold.split import assign_folds, presence
from detect.metrics import as_arrays, evaluate
from detect.metrics.coco import coco_ground_truth
from detect.metrics.matching import match
from detect.outputs import atomic_write_text, write_json
from detect.report.errors import class_curves
from detect.train import TrainConfig, fit
from detect.weights import load_model


@dataclass
class KFoldConfig:
    base: TrainConfig  # data and every training option; out replaced per fold
    out: Path
    folds: int = 5
    group_by: str | None = None  # a meta.csv column whose values stay within one fold
    meta: Path | None = None  # default: meta.csv beside data.yaml
    seed: int = 0

    def __post_init__(self):
        self.out = Path(self.out)
        if self.folds < 2:
            raise UsageError(f"--folds must be at least 2, got {self.folds}")


@dataclass
class Split:
    samples: list[Sample]
    folds: np.ndarray
    root: Path
    names: list[str] = field(default_factory=list)

    def file_name(self, i: int) -> str:
        p = self.samples[i].path
        return safe_name(p.relative_to(self.root) if p.is_relative_to(self.root) else p.name)


def make_split(c: KFoldConfig) -> Split:
    """The training images and their folds: read back from DIR/folds.json when it exists."""
    cfg = load_data_config(c.base.data)
    source = cfg.splits.get("train")
    if source is None or source.format != "yolo":
        raise UsageError(f"{c.base.data}: k-fold needs a YOLO-format train split (image lists and labels/*.txt)")
    samples, _ = scan_split(cfg, "train", progress=False)
    saved = c.out / "folds.json"
    if saved.is_file():
        made = json.loads(saved.read_text())
        asked = {"folds": c.folds, "seed": c.seed, "group_by": c.group_by}
        if (was := {k: made.get(k) for k in asked}) != asked:
            differ = ", ".join(f"{k} {was[k]} (asked {asked[k]})" for k in asked if was[k] != asked[k])
            raise UsageError(f"{saved}: split with {differ}; use another --out, or delete it to split again")
        by_path = {r["path"]: r["fold"] for r in made["images"]}
        if set(by_path) == {str(s.path) for s in samples}:
            return Split(samples, np.array([by_path[str(s.path)] for s in samples]), cfg.root, cfg.names)
        raise UsageError(f"{saved}: made for other training images; use another --out, or delete it to split again")
    meta_file = c.meta or (cfg.root / "meta.csv" if (cfg.root / "meta.csv").is_file() else None)
    table = read_meta(meta_file, [s.path for s in samples], cfg.root) if meta_file else None
    if c.group_by and (table is None or c.group_by not in table.columns):
        raise DataError(f"--group-by {c.group_by}: no such column in {meta_file or 'meta.csv (none beside data.yaml)'}")
    scenes = list(table["scene"]) if table is not None and "scene" in table.columns else None
    groups = list(table[c.group_by]) if c.group_by else None
    folds = assign_folds(presence([s.classes for s in samples], cfg.nc, scenes), c.folds, c.seed, groups)
    c.out.mkdir(parents=True, exist_ok=True)
    write_json({"folds": c.folds, "seed": c.seed, "group_by": c.group_by,
                "images": [{"path": str(s.path), "fold": int(f)} for s, f in zip(samples, folds)]}, saved)
    return Split(samples, folds, cfg.root, cfg.names)


def fold_data(split: Split, k: int, folder: Path) -> Path:
    """FOLDER/data.yaml: training on every fold but k, validating on fold k."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, keep in (("train", split.folds != k), ("val", split.folds == k)):
        paths = [str(s.path) for s, kept in zip(split.samples, keep) if kept]
        atomic_write_text("".join(p + "\n" for p in paths), folder / f"{name}.txt")
    # "." is the yaml's own folder (the lists hold absolute image paths): right for a relative --out too
    data = {"path": ".", "train": "train.txt", "val": "val.txt", "names": split.names}
    atomic_write_text(yaml.safe_dump(data, sort_keys=False), folder / "data.yaml")
    return folder / "data.yaml"


def train_fold(c: KFoldConfig, data: Path, folder: Path) -> Path:
    """The fold's best.pt: trained, resumed from its last.pt, or found finished."""
    run = folder / "run"
    if (run / "metrics.json").is_file():
        return run / "weights" / "best.pt"
    last = run / "weights" / "last.pt"
    # validated at its last epoch only: a best.pt chosen on the held-out fold would flatter the out-of-fold score
    config = (TrainConfig.resumed(last) if last.is_file() else
              dataclasses.replace(c.base, data=str(data), out=run, val_interval=c.base.epochs))
    result = fit(config)
    if result.stopped:
        raise KeyboardInterrupt
    return Path(result.best)


def predict_fold(c: KFoldConfig, split: Split, k: int, weights: Path) -> tuple[dict, list[dict]]:
    """Fold k's held-out images through the model that did not see them: (metrics, --json records)."""
    held = np.flatnonzero(split.folds == k)
    model, _ = load_model(weights, "cpu" if c.base.device in (None, "cpu") else c.base.device)
    device = next(model.parameters()).device
    metrics, dets = run_eval(lambda t: model(t.to(device).float()), [split.samples[i] for i in held], split.names,
                             EvalConfig(c.base.val_img or c.base.img, workers=min(c.base.workers, 2), progress=False))
    records = [{"file_name": split.file_name(int(held[d["image_id"]])), "category_id": d["category_id"],
                "bbox": d["bbox"], "score": d["score"]} for d in dets]
    return {k: metrics[k] for k in ("map50", "map50_95", "precision", "recall")}, records


def run_kfold(c: KFoldConfig) -> dict:
    split = make_split(c)
    counts = np.bincount(split.folds, minlength=c.folds)
    print(f"{len(split.samples)} training images in {c.folds} folds ({', '.join(map(str, counts))} images)")
    fold_metrics, records, weights = [], [], []
    for k in range(c.folds):
        folder = c.out / f"fold{k}"
        done = folder / "oof.json"
        best = folder / "run" / "weights" / "best.pt"
        if done.is_file():
            print(f"fold {k}: done ({done}); not trained again")
        else:
            print(f"fold {k}: training on {int((split.folds != k).sum())} images, holding out {int(counts[k])}")
            best = train_fold(c, fold_data(split, k, folder), folder)
            m, recs = predict_fold(c, split, k, best)
            write_json({"metrics": m, "detections": recs}, done)
        saved = json.loads(done.read_text())
        fold_metrics.append({"fold": k, "images": int(counts[k]), **saved["metrics"]})
        records += saved["detections"]
        weights.append(str(best))
    return write_outputs(c, split, fold_metrics, records, weights)


def write_outputs(c: KFoldConfig, split: Split, fold_metrics: list[dict], records: list[dict], weights: list[str]) -> dict:
    names = [split.file_name(i) for i in range(len(split.samples))]
    write_json({"images": [{"file_name": n, "fold": int(f)} for n, f in zip(names, split.folds)], "detections": records},
               c.out / "oof.json")
    index = {n: i for i, n in enumerate(names)}
    dets = [{**r, "image_id": index[r["file_name"]]} for r in records]
    gt = coco_ground_truth(split.samples, split.names)
    overall = evaluate(gt, dets, split.names)
    summary = {"folds": c.folds, "images": len(names), "oof": {k: overall[k] for k in ("map50", "map50_95", "precision", "recall")},
               "oof_per_class": overall.get("per_class"), "per_fold": fold_metrics,
               "fold_map50_95_mean": float(np.mean([f["map50_95"] for f in fold_metrics]))}
    write_json(summary, c.out / "oof_metrics.json")
    g, d = as_arrays(gt, dets)
    instances = np.bincount(g["cls"], minlength=len(split.names))[: len(split.names)]
    curves = class_curves(d, match(g, d, 0.5, 100), instances)
    write_thresholds(c.out / "thresholds.json", split.names,
                     [float(curves["best_conf"][i]) if instances[i] else None for i in range(len(split.names))],
                     curves["global_conf"], f"best F1 per class on {len(names)} out-of-fold images ({c.out})")
    atomic_write_text("".join(w + "\n" for w in weights), c.out / "ensemble.txt")
    print(f"out-of-fold mAP50-95 {summary['oof']['map50_95']:.4f} (folds' mean {summary['fold_map50_95_mean']:.4f}); "
          f"{c.out / 'oof.json'}, {c.out / 'thresholds.json'}; ensemble: --weights $(cat {c.out / 'ensemble.txt'}) --fuse wbf")
    return summary
