"""Scale of `python -m analysis`: N label files with M boxes, header reads excluded.

    python benchmarks/analyze_scale.py [--images 100000] [--boxes 1000000] [--workdir /tmp/analyze_scale]

Every image is a hard link to one real 1920x1080 JPEG (no disk cost); image headers are
replaced by that known size, as the target excludes header reads. Everything else is real:
label files parsed and validated in worker processes, the pandas tables, every statistic,
anchor fitting, plots and reports. Prints wall time and peak memory (this process and its
workers, from getrusage).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import cv2  # noqa: I001
import numpy as np


LINKS_PER_FILE = 50_000


def build(root: Path, images: int, boxes: int, seed: int = 0) -> Path:
    if (root / "data.yaml").is_file():
        return root / "data.yaml"
    shutil.rmtree(root, ignore_errors=True)  # a partial build from an interrupted run
    rng = np.random.default_rng(seed)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "train").mkdir(parents=True, exist_ok=True)
    masters = []  # ext4 allows 65,000 hard links per file
    for k in range(images // LINKS_PER_FILE + 1):
        masters.append(root / f"master{k}.jpg")
        cv2.imwrite(str(masters[-1]), np.full((1080, 1920, 3), 100, np.uint8))
    per_image = rng.multinomial(boxes, np.ones(images) / images)
    cls = rng.choice(12, boxes, p=np.r_[0.75, np.full(11, 0.25 / 11)])
    wh = rng.uniform(0.005, 0.2, (boxes, 2))
    xy = rng.uniform(0.1, 0.9, (boxes, 2))
    start = 0
    for i, n in enumerate(per_image):
        os.link(masters[i // LINKS_PER_FILE], root / "images" / "train" / f"{i:06d}.jpg")
        rows = [
            f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}"
            for c, (x, y), (w, h) in zip(cls[start : start + n], xy[start : start + n], wh[start : start + n])
        ]
        (root / "labels" / "train" / f"{i:06d}.txt").write_text("\n".join(rows) + "\n")
        start += n
    names = [f"class{i}" for i in range(12)]
    (root / "data.yaml").write_text(f"path: .\ntrain: images/train\nnames: {names}\n")
    return root / "data.yaml"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--boxes", type=int, default=1_000_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/analyze_scale"))
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    t = time.perf_counter()
    data = build(args.workdir / f"{args.images}_{args.boxes}", args.images, args.boxes)
    print(f"dataset ready in {time.perf_counter() - t:.1f} s: {data}")
    os.environ["DETECT_CACHE"] = str(args.workdir / "cache")
    shutil.rmtree(args.workdir / "cache", ignore_errors=True)  # a cold run: no label cache

    import detect.data.labels as labels

    labels.read_image_header = lambda path, report: (1080, 1920)  # header reads excluded (forked workers inherit)
    from analysis.__main__ import analyse

    t = time.perf_counter()
    summary = analyse(data, args.workdir / "out", img=640, workers=args.workers, progress=False)
    wall = time.perf_counter() - t
    peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    peak_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    s = summary["splits"]["train"]
    print(
        f"analysed {s['images']} images, {s['instances']} boxes in {wall:.1f} s "
        f"(scan {summary['timing_s']['scan']:.1f} s, statistics+plots {summary['timing_s']['statistics']:.1f} s)"
    )
    print(f"peak RSS: main {peak_self:.2f} GiB, largest worker {peak_children:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
