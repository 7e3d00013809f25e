"""Pseudo-labels: a model (or an ensemble, with TTA) labels unlabelled images; training takes them as they are.

1. The predictor runs on D's labelled val split: each class's thresholds (``select.class_thresholds``):
   kept boxes reach ``precision`` there.
2. It runs on the unlabelled images: boxes at or above their class's ``keep`` become labels; an uncertain
   box (between ``drop`` and ``keep``) must not be taught as background: it is written as an ignore region,
   class -1, which the loss neither teaches as an object nor as background (``uncertain="ignore"``, the
   default), or its image is left out (``uncertain="leave-out"``); an image with no box above any ``drop``
   is kept as a background image.
3. OUT/images (links to the originals), OUT/labels, OUT/data.yaml (D's training images plus these;
   D's val split), OUT/pseudo.json (the thresholds, what each class kept on val, the counts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

from detect import cli
from detect.data.config import load_data_config
from detect.data.dataset import load_image
from detect.data.labels import IGNORE_CLASS, scan_split
from detect.errors import UsageError
from detect.evaluate import coco_results, predictor_detections
from detect.infer.config import InferenceConfig
from detect.infer.predictor import Predictor
from detect.metrics import as_arrays
from detect.metrics.coco import coco_ground_truth
from detect.outputs import atomic_write_text, ensure_writable, write_json
from detect.predict import collect_sources, output_names, yolo_lines
from detect.pseudo.select import ClassThreshold, class_thresholds

UNCERTAIN = ("leave-out", "ignore")


@dataclass
class PseudoConfig:
    weights: list[str]
    source: str  # unlabelled images: a folder, a glob or a file
    data: str  # the labelled set: its val split chooses the thresholds, its train split is kept
    out: Path
    img: list[int] = field(default_factory=lambda: [640])
    precision: float = 0.9
    drop_precision: float = 0.5
    inference: InferenceConfig = field(default_factory=lambda: InferenceConfig(conf=0.001, iou=0.6, max_det=300))
    device: str | None = None
    batch: int = 16
    workers: int = 2
    # "ignore": the image is kept, its uncertain boxes become ignore regions; "leave-out": the image is dropped.
    # ignore won on ccp at 10 epochs, two seeds (docs/competition.md)
    uncertain: str = "ignore"

    def __post_init__(self):
        self.out = Path(self.out)
        if self.uncertain not in UNCERTAIN:
            raise UsageError(f"uncertain boxes: {self.uncertain!r} is not one of {', '.join(UNCERTAIN)}")
        if not 0 < self.drop_precision <= self.precision < 1:
            raise UsageError(f"need 0 < drop precision {self.drop_precision} <= --precision {self.precision} < 1")


def label(c: PseudoConfig) -> dict:
    """Write the pseudo-labelled set; returns the summary also written to OUT/pseudo.json."""
    cfg = load_data_config(c.data)
    if "val" not in cfg.splits or "train" not in cfg.splits:
        raise UsageError(f"{c.data}: needs a train split (kept) and a labelled val split (chooses the thresholds)")
    ensure_writable(c.out)
    predictor = Predictor.from_weights(c.weights, c.img, cli.select_device(c.device), c.inference,
                                       data=(cfg.names, str(c.data), True))
    val, _ = scan_split(cfg, "val", progress=False)
    dets, _ = predictor_detections(predictor, val, c.batch, c.workers)
    g, d = as_arrays(coco_ground_truth(val, cfg.names), coco_results(dets))
    thresholds = class_thresholds(g, d, cfg.nc, c.precision, c.drop_precision)
    for name, t in zip(cfg.names, thresholds):
        print(f"{name}: keep >= {t.keep:.3f} (precision {t.precision:.3f}, recall {t.recall:.3f} of {t.instances} on val); "
              f"uncertain from {t.drop:.3f}" if t.keep != float("inf") else
              f"{name}: no threshold reaches precision {c.precision} on val; no pseudo-boxes (uncertain from {t.drop:.3f})")
    counts = write_labels(c, predictor, thresholds)
    data = write_data_yaml(c, cfg)
    summary = {"data": str(data), "precision": c.precision, "drop_precision": c.drop_precision, "uncertain": c.uncertain,
               "weights": [str(w) for w in c.weights], "img": c.img, "augment": c.inference.augment,
               "classes": {n: {"keep": t.keep, "drop": t.drop, "val_precision": t.precision, "val_recall": t.recall,
                               "val_instances": t.instances, "boxes": counts["boxes"][i]}
                           for i, (n, t) in enumerate(zip(cfg.names, thresholds))},
               **{k: v for k, v in counts.items() if k != "boxes"}}
    write_json(summary, c.out / "pseudo.json")
    print(f"{counts['labelled']} images labelled ({sum(counts['boxes'])} boxes), {counts['background']} as background, "
          + (f"{counts['ignore_regions']} uncertain boxes as ignore regions" if c.uncertain == "ignore" else
             f"{counts['left_out']} left out (uncertain boxes)") + f"; train with --data {data}")
    return summary


def write_labels(c: PseudoConfig, predictor: Predictor, thresholds: list[ClassThreshold]) -> dict:
    files, root = collect_sources(c.source)
    if not files:
        raise UsageError(f"--source {c.source}: no images found")
    names = output_names(files, root)
    keep = torch.tensor([t.keep for t in thresholds])
    drop = torch.tensor([t.drop for t in thresholds])
    counts = {"images": len(files), "labelled": 0, "background": 0, "left_out": 0, "unreadable": 0,
              "ignore_regions": 0, "boxes": [0] * len(thresholds)}
    for f in tqdm(files, desc="pseudo-labels", unit="img", disable=None):
        try:
            img = load_image(f)
        except OSError:
            counts["unreadable"] += 1
            continue
        det = predictor(img).cpu()
        cls = det[:, 5].long()
        kept = det[det[:, 4] >= keep[cls]]
        uncertain = det[(det[:, 4] >= drop[cls]) & (det[:, 4] < keep[cls])]
        if len(uncertain) and c.uncertain == "leave-out":
            counts["left_out"] += 1
            continue
        name = names[f]  # unique; it keeps the suffix only where two images share a stem: a.jpg, a.png
        rel = name.with_name(f"{name.stem}_{name.suffix[1:]}{f.suffix}") if name.suffix else name.with_suffix(f.suffix)
        link = c.out / "images" / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            os.symlink(Path(f).resolve(), link)
        h, w = img.shape[:2]
        label_file = (c.out / "labels" / rel).with_suffix(".txt")
        label_file.parent.mkdir(parents=True, exist_ok=True)
        regions = uncertain.clone()
        regions[:, 5] = IGNORE_CLASS  # written as boxes of the ignore class, after the kept ones
        lines = yolo_lines(torch.cat([kept, regions]), h, w)
        atomic_write_text("".join(line.rsplit(" ", 1)[0] + "\n" for line in lines), label_file)  # without the score
        counts["labelled" if len(kept) else "background"] += 1
        counts["ignore_regions"] += len(uncertain)
        per_class = np.bincount(kept[:, 5].long().numpy(), minlength=len(thresholds))
        counts["boxes"] = [int(a + b) for a, b in zip(counts["boxes"], per_class)]
    return counts


def write_data_yaml(c: PseudoConfig, cfg) -> Path:
    """D's training images (listed) and the pseudo-labelled ones; D's val split as it was."""
    lists = {}
    for split in ("train", "val"):
        samples, _ = scan_split(cfg, split, progress=False)
        lists[split] = c.out / f"{split}_labelled.txt"
        atomic_write_text("".join(f"{s.path}\n" for s in samples), lists[split])
    data = {"path": str(c.out.resolve()), "train": [lists["train"].name, "images"], "val": lists["val"].name,
            "names": cfg.names}
    return atomic_write_text(yaml.safe_dump(data, sort_keys=False), c.out / "data.yaml")
