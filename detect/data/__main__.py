"""Check a dataset with the shared label validator: counts per split and every problem found.

    python -m detect.data --data D [--splits train,val] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from detect import cli
from detect.data.config import load_data_config
from detect.data.labels import scan_split


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m detect.data", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument("--splits", default=None, help="comma-separated (default: every split in data.yaml)")
    p.add_argument("--out", type=Path, default=None, help="write summary.json and issues.tsv here")
    args = p.parse_args(argv)
    cfg = load_data_config(args.data)
    splits = args.splits.split(",") if args.splits else list(cfg.splits)
    summary = {}
    for split in splits:
        samples, report = scan_split(cfg, split)
        boxes = sum(len(s.classes) for s in samples)
        print(f"{split}: {len(samples)} images, {boxes} boxes, {len(cfg.split(split).images) - len(samples)} excluded")
        for line in report.lines():
            print("  " + line)
        summary[split] = {"images": len(samples), "boxes": boxes, "issues": report.counts()}
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            report.write(args.out / f"issues_{split}.tsv")
    if args.out:
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    if not any(v["images"] for v in summary.values()):
        raise cli.UsageError(f"{args.data}: no usable images in {', '.join(splits)}")
    return 0


if __name__ == "__main__":
    cli.run(main)
