"""``detect.val --report DIR``: where the points are lost, as report.html (self-contained),
report.json and the PNGs beside them.

Sections: COCO AP by object size, AP and best-F1 threshold per class, PR and F1 curves,
the confusion matrix at the best mean-F1 confidence, AP per scene (or any column of
``meta.csv``), the most frequent class confusions, and a gallery of the images with the
most missed and false boxes.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from detect.data.dataset import load_image
from detect.data.images import safe_name
from detect.data.labels import Sample
from detect.data.meta import read_meta
from detect.htmldoc import embed_image, page, table
from detect.infer.thresholds import write_thresholds
from detect.metrics import as_arrays
from detect.metrics.matching import match
from detect.outputs import atomic_write_text
from detect.report import plots
from detect.report.errors import ap_by_attribute, class_curves, confusion_matrix, image_errors

SIZES = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, float("inf")))
MAX_NUMERIC_GROUPS = 12  # a numeric meta.csv column with more values (box counts...) gets no AP table


def build_report(samples: list[Sample], names: list[str], gt: dict, detections: list[dict], result: dict,
                 meta=None, root: Path | None = None, max_det: int = 100) -> tuple[dict, dict]:
    """The report's numbers (report.json) and the arrays its figures need."""
    nc = len(names)
    g, d = as_arrays(gt, detections)
    instances = np.bincount(g["cls"], minlength=nc)[:nc]
    matches = match(g, d, 0.5, max_det)
    curves = class_curves(d, matches, instances)
    conf = curves["global_conf"]
    cm = confusion_matrix(g, d, nc, conf=conf, iou=0.45)
    area = g["xywh"][:, 2] * g["xywh"][:, 3]
    errors = image_errors(g, d, matches, conf, len(samples))
    report = {
        "metrics": {k: result.get(k) for k in ("map50", "map50_95", "precision", "recall", "map_small", "map_medium", "map_large")},
        "conf_threshold": conf,
        "by_size": [{"size": s, "instances": int(((area >= lo) & (area < hi)).sum()), "map50_95": result.get(f"map_{s}")}
                    for s, lo, hi in SIZES],
        "per_class": [
            {**{k: row[k] for k in ("class", "instances", "map50", "map50_95")},
             "best_conf": float(curves["best_conf"][c]) if instances[c] else None,
             "best_f1": float(curves["best_f1"][c]) if instances[c] else None}
            for c, row in enumerate(result["per_class"])
        ],
        "confusion_matrix": {"labels": [*names, "background"], "rows": "predicted", "columns": "true",
                             "conf": conf, "iou": 0.45, "matrix": cm.tolist()},
        "top_confusions": top_confusions(cm, names),
        "by_attribute": by_attribute(samples, gt, detections, meta, root, max_det),
        "worst_images": [
            {"file": safe_name(samples[e["image"]].path), "objects": e["objects"], "missed": len(e["missed"]),
             "false": len(e["false"]), "confusions": [f"{names[int(d['cls'][i])]} for {names[t]}" for i, t in e["confused"].items()]}
            for e in errors if e["missed"] or e["false"]
        ],
    }
    return report, {"g": g, "d": d, "curves": curves, "cm": cm, "instances": instances, "errors": errors}


def top_confusions(cm: np.ndarray, names: list[str], k: int = 10) -> list[dict]:
    """The most frequent (predicted, true) pairs of different real classes."""
    nc = len(names)
    off = cm[:nc, :nc].copy()
    np.fill_diagonal(off, 0)
    pairs = [(int(off[i, j]), i, j) for i, j in zip(*np.nonzero(off))]
    return [{"predicted": names[i], "true": names[j], "count": n} for n, i, j in sorted(pairs, reverse=True)[:k]]


def by_attribute(samples, gt, detections, meta, root, max_det) -> dict:
    if meta is None:
        return {}

    table_ = read_meta(meta, [s.path for s in samples], root or Path("."))
    out = {}
    for col in table_.attrs["columns"]:
        values = table_[col].tolist()
        distinct = {v for v in values if v is not None}
        numeric = all(isinstance(v, (int, float)) for v in distinct)
        if len(distinct) < 2 or (numeric and len(distinct) > MAX_NUMERIC_GROUPS):
            continue  # one group says nothing; a count or a measurement is not a grouping
        out[str(col)] = ap_by_attribute(gt, detections, values, max_det)
    return out


def write_report(out: Path, samples, names, gt, detections, result, meta=None, root=None, max_det: int = 100,
                 worst: int = 12) -> dict:
    out = Path(out)
    (out / "worst").mkdir(parents=True, exist_ok=True)
    report, arrays = build_report(samples, names, gt, detections, result, meta, root, max_det)
    figures = [plots.confusion(arrays["cm"], names, out), *plots.curves(arrays["curves"], names, arrays["instances"], out)]
    present = [r for r in report["per_class"] if r["instances"]]
    figures.append(plots.bars([r["class"] for r in present], [r["map50_95"] for r in present], "AP per class", out,
                              "ap_per_class.png"))
    for col, rows in report["by_attribute"].items():
        figures.append(plots.bars([str(r["value"]) for r in rows], [r["map50_95"] for r in rows], f"AP per {col}", out,
                                  f"ap_per_{_slug(col)}.png"))
    gallery = draw_worst(out, samples, names, arrays, worst)
    atomic_write_text(json.dumps(report, indent=1), out / "report.json")
    write_thresholds(out / "thresholds.json", names, [r["best_conf"] for r in report["per_class"]],
                     report["conf_threshold"], f"best F1 per class on {len(samples)} images (detect.val --report)")
    atomic_write_text(render(report, out, figures, gallery), out / "report.html")
    return report


def draw_worst(out: Path, samples, names, arrays, k: int) -> list[tuple[str, dict]]:
    g, d = arrays["g"], arrays["d"]
    files = []
    for e in [e for e in arrays["errors"] if e["missed"] or e["false"]][:k]:
        img = load_image(samples[e["image"]].path)
        xyxy = lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])  # noqa: E731
        gt = [(xyxy(g["xywh"][i]), int(g["cls"][i]), "missed") for i in e["missed"]]
        dets = [(xyxy(d["xywh"][i]), int(d["cls"][i]), "false", float(d["score"][i]), e["confused"].get(i))
                for i in e["false"]]
        name = f"worst/{len(files):02d}_{_slug(samples[e['image']].path.stem)}.jpg"
        plots.gallery_image(img, gt, dets, names, out / name)
        files.append((name, e))
    return files


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(text))[:60]


def render(report: dict, out: Path, figures: list[str], gallery: list[tuple[str, dict]]) -> str:
    m = report["metrics"]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    body = [
        f"<p>mAP50-95 {fmt(m['map50_95'])}, mAP50 {fmt(m['map50'])}; precision {fmt(m['precision'])} and recall "
        f"{fmt(m['recall'])} at confidence {report['conf_threshold']:.3f} (best mean F1), the threshold used below.</p>",
        "<h2>AP by object size (COCO areas in original pixels)</h2>",
        table([[r["size"], r["instances"], fmt(r["map50_95"])] for r in report["by_size"]], ["size", "objects", "mAP50-95"]),
        "<h2>Per class</h2>",
        table([[r["class"], r["instances"], fmt(r["map50"]), fmt(r["map50_95"]), fmt(r["best_conf"]), fmt(r["best_f1"])]
               for r in report["per_class"] if r["instances"]],
              ["class", "objects", "AP50", "AP50-95", "best-F1 conf", "best F1"]),
    ]
    for col, rows in report["by_attribute"].items():
        body += [f"<h2>AP per {html.escape(str(col))}</h2>",
                 table([[r["value"], r["images"], r["instances"], fmt(r["map50"]), fmt(r["map50_95"])] for r in rows],
                       [str(col), "images", "objects", "AP50", "AP50-95"])]
    body += ["<h2>Most frequent confusions</h2>",
             table([[c["predicted"], c["true"], c["count"]] for c in report["top_confusions"]], ["predicted", "true", "boxes"]),
             "<h2>Figures</h2>", *(embed_image(out / f) for f in figures),
             "<h2>Worst images</h2><p>orange: missed object; red: false box (score; <i>is X</i>: the object it "
             "covers is of class X)</p>"]
    for name, e in gallery:
        body.append(f"<h3>{html.escape(name)}: {len(e['missed'])} missed, {len(e['false'])} false of {e['objects']} objects</h3>")
        body.append(embed_image(out / name, "wide"))
    return page("Validation report", body)
