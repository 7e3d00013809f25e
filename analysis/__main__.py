"""Analyse a detection dataset and recommend how to train on it.

    python -m analysis --data D --out runs/analyze/NAME [--splits train,val] [--meta FILE.csv] [--img 640]

Writes summary.json (machine-readable), report.html (self-contained), report.md with PNG
plots, images.parquet / boxes.parquet (the scan tables), anchors.yaml (fitted anchors the
trainer accepts), recommended.yaml (the advice as a recipe: python -m detect.train --hyp
recommended.yaml) and issues_<split>.tsv (every label problem, file and line).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from analysis import plots, stats
from analysis.anchors import anchor_report, anchors_yaml
from analysis.recipe import recipe_yaml
from analysis.recommend import recommend
from analysis.report import console_summary, write_reports
from analysis.scan import scan
from detect import cli
from detect.data.config import load_data_config
from detect.outputs import ensure_writable


def analyse(
    data: Path,
    out: Path,
    splits: list[str] | None = None,
    meta: Path | None = None,
    img: int = 640,
    workers: int = 2,
    progress: bool = True,
) -> dict:
    t0 = time.perf_counter()
    cfg = load_data_config(data)
    splits = splits or list(cfg.splits)
    if meta is None and (cfg.root / "meta.csv").is_file():
        meta = cfg.root / "meta.csv"
        print(f"using {meta} for per-image attributes (pass --meta to choose another)")
    s = scan(cfg, splits, workers=workers, meta=meta, progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    s.images.to_parquet(out / "images.parquet", index=False)
    s.boxes.to_parquet(out / "boxes.parquet", index=False)
    for split, report in s.reports.items():
        report.write(out / f"issues_{split}.tsv")
    t_stats = time.perf_counter()
    names = cfg.names
    images, boxes = s.images, s.boxes
    scale = stats.input_scale(images, boxes, img)
    wh_in = np.stack([boxes["w_px"].to_numpy() * scale, boxes["h_px"].to_numpy() * scale], 1)
    occ = stats.occlusion(images, boxes)
    per_image_pairs = occ.pop("_per_image_pairs")
    summary = {
        "data": str(data),
        "input_size": img,
        "splits": stats.split_counts(images, boxes, names),
        "image_sizes": stats.image_sizes(images),
        "classes": stats.class_stats(boxes, names),
        "density": stats.density(images),
        "box_sizes": stats.box_sizes(images, boxes, img),
        "occlusion": occ,
        "mosaic_cut_share": stats.mosaic_cut_share(images, boxes),
        "anchors": anchor_report(wh_in, img),
        "label_issues": {k: r.counts() for k, r in s.reports.items()},
        "excluded_images": s.excluded,
        "orphan_labels": s.orphan_labels,
    }
    meta_cols = images.attrs.get("meta_columns", [])
    if meta_cols:
        column = "scene" if "scene" in meta_cols else meta_cols[0]
        summary["scenes"] = stats.scenes(images, boxes, names, column)
        summary["scenes"]["unmatched_images"] = images.attrs.get("meta_unmatched", 0)
    if "train" in splits and "val" in splits:
        summary["shift"] = stats.split_shift(images, boxes, names, "train", "val", img)
    summary["recommendations"] = recommend(summary, list(zip(images["height"], images["width"])), img)
    long_side = int(np.median(np.maximum(images["height"], images["width"])))
    (out / "recommended.yaml").write_text(recipe_yaml(summary["recommendations"], img, long_side, str(data)))
    if "fitted" in summary["anchors"]:
        a = summary["anchors"]["fitted"]
        comment = f"fitted by python -m analysis on {data} at img {img}: BPR {a['bpr']:.4f}, AAT {a['aat']:.2f}"
        (out / "anchors.yaml").write_text(anchors_yaml(a["anchors"], comment))
    summary["plots"] = {
        "classes": plots.class_distribution(summary, out),
        "image_sizes": plots.image_sizes(summary, out),
        "density": plots.density(images, out),
        "box_sizes": plots.box_sizes(images, boxes, img, out),
        "aspect_ratios": plots.aspect_ratios(boxes, out),
        "centres": plots.centres(stats.centre_heatmap(boxes), out),
        "occlusion": plots.occlusion(per_image_pairs, out),
        "anchors": plots.anchors(wh_in, summary["anchors"], out),
    }
    if "scenes" in summary:
        summary["plots"]["scenes"] = plots.scenes(summary, out)
    summary["timing_s"] = {
        "scan": s.seconds,
        "statistics": time.perf_counter() - t_stats,
        "total": time.perf_counter() - t0,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_reports(summary, out)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m analysis",
        description=__doc__.split("\n\n")[0],
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--data", required=True, type=Path, help="data.yaml")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: all in data.yaml)")
    p.add_argument(
        "--meta",
        type=Path,
        default=None,
        help="CSV: first column the image (relative path or file name), then attributes such as scene "
        "(default: meta.csv beside data.yaml if present)",
    )
    p.add_argument("--img", type=int, default=640, help="network input size the statistics assume")
    p.add_argument("--workers", type=int, default=2, help="processes for scanning large splits")
    args = p.parse_args(argv)
    cli.check_img(args.img)
    cli.check_range("--workers", args.workers, 0)
    ensure_writable(args.out)
    summary = analyse(
        args.data, args.out, args.splits.split(",") if args.splits else None, args.meta, args.img, args.workers
    )
    for split, counts in summary["label_issues"].items():
        if counts:
            print(f"{split}: label problems {counts} (see {args.out}/issues_{split}.tsv)")
    for split, files in summary["orphan_labels"].items():
        if files:
            print(f"{split}: {len(files)} label files without an image, e.g. {files[0]}")
    print(console_summary(summary))
    print(f"report: {args.out / 'report.html'}")
    return 0


if __name__ == "__main__":
    cli.run(main)
