"""A deterministic, competition-like synthetic dataset: the pipeline's embedded default.

    python -m detect.data.synthetic --out DIR --images N --seed S [--val-fraction 0.2]

Mimics the pedestrian-clothing contest the project is built for: 70% of images are
1920x1080, the rest other sizes; people-like figures whose top and bottom garments (colour
and pattern) make 12 classes, one of them about 75% of boxes; 15 unevenly frequent scenes
(recorded in meta.csv); perspective, so figures near the horizon are tiny and near ones
large; dense groups that occlude each other. Writes YOLO labels and a data.yaml.
"""

from __future__ import annotations

import argparse
import csv
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import yaml

TOPS = ("white_tee", "red_tee", "blue_stripes", "green_check")
BOTTOMS = ("black_trousers", "blue_shorts", "yellow_skirt")
CLASSES = [f"{t}+{b}" for t in TOPS for b in BOTTOMS]
# Class shares: one head class at ~75% of boxes, then a long tail down to ~0.5%.
_TAIL = np.array([6, 4, 3, 2.5, 2, 1.8, 1.5, 1.2, 1.0, 0.6, 0.4])
CLASS_P = np.concatenate([[75.0], _TAIL / _TAIL.sum() * 25.0]) / 100
SCENES = ("street", "plaza", "park", "station", "mall", "campus", "crosswalk", "beach", "market",
          "parking", "bridge", "stadium", "airport", "square", "subway")
SCENE_P = (1 / np.arange(1, 16) ** 0.9) / (1 / np.arange(1, 16) ** 0.9).sum()  # Zipf-like
# (width, height, share): 70% are 1920x1080 like the contest's test set.
SIZES = ((1920, 1080, 0.70), (1280, 720, 0.10), (1080, 1920, 0.08), (1440, 1080, 0.07), (960, 1280, 0.05))

_TOP_COLOURS = {"white_tee": (235, 235, 235), "red_tee": (40, 40, 200), "blue_stripes": (190, 90, 30),
                "green_check": (60, 160, 50)}
_BOTTOM_COLOURS = {"black_trousers": (30, 30, 30), "blue_shorts": (150, 80, 20), "yellow_skirt": (40, 200, 230)}


def _scene_palette(scene: int) -> tuple[np.ndarray, np.ndarray, float, int]:
    r = np.random.default_rng(1000 + scene)  # fixed per scene, whatever the dataset seed
    return r.integers(60, 230, 3), r.integers(40, 200, 3), float(r.uniform(0.25, 0.5)), scene % 3


def _background(rng: np.random.Generator, w: int, h: int, scene: int) -> tuple[np.ndarray, int]:
    sky, ground, horizon_frac, texture = _scene_palette(scene)
    sw, sh = max(8, w // 8), max(8, h // 8)
    t = np.linspace(0, 1, sh)[:, None, None]
    horizon = int(horizon_frac * sh)
    img = np.empty((sh, sw, 3), np.float32)
    img[:horizon] = sky * (0.7 + 0.3 * t[:horizon])
    img[horizon:] = ground * (0.8 + 0.2 * t[horizon:])
    if texture == 0:  # paving tiles
        img[horizon:, ::6] *= 0.85
        img[horizon::5] *= 0.85
    elif texture == 1:  # grass / sand noise
        img[horizon:] *= rng.uniform(0.85, 1.1, (sh - horizon, sw, 1))
    else:  # road stripes
        img[horizon + (sh - horizon) // 2 :: 7, ::9] = 230
    img += rng.normal(0, 6, img.shape)
    big = cv2.resize(np.clip(img, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)
    return big, int(horizon_frac * h)


def _draw_figure(img: np.ndarray, x: int, foot: int, height: int, width: int, cls: int, rng: np.random.Generator):
    """Draw one person standing at (x, foot)."""
    top, bottom = TOPS[cls // len(BOTTOMS)], BOTTOMS[cls % len(BOTTOMS)]
    head = max(1, int(height * 0.13))
    x1, x2, y1 = x - width // 2, x + width // 2, foot - height
    skin = tuple(int(v) for v in rng.integers([80, 110, 150], [150, 180, 230]))
    cv2.circle(img, (x, y1 + head // 2 + 1), max(1, head // 2 + 1), skin, -1)
    t1, t2 = y1 + head, y1 + int(height * 0.52)
    tc = _TOP_COLOURS[top]
    cv2.rectangle(img, (x1, t1), (x2, t2), tc, -1)
    step = max(2, height // 16)
    if top == "blue_stripes":
        for yy in range(t1, t2, 2 * step):
            cv2.rectangle(img, (x1, yy), (x2, min(t2, yy + step - 1)), (240, 240, 240), -1)
    elif top == "green_check":
        for yy in range(t1, t2, 2 * step):
            for xx in range(x1 + (yy // step) % 2 * step, x2, 2 * step):
                cv2.rectangle(img, (xx, yy), (min(x2, xx + step - 1), min(t2, yy + step - 1)), (30, 90, 30), -1)
    bc = _BOTTOM_COLOURS[bottom]
    legs = max(1, width // 2 - 1)
    if bottom == "yellow_skirt":
        pts = np.array([[x1 + width // 8, t2], [x2 - width // 8, t2], [x2, t2 + (foot - t2) // 2], [x1, t2 + (foot - t2) // 2]])
        cv2.fillPoly(img, [pts.astype(np.int32)], bc)
        cv2.rectangle(img, (x1 + width // 5, t2 + (foot - t2) // 2), (x2 - width // 5, foot), skin, -1)
    else:
        knee = foot if bottom == "black_trousers" else t2 + (foot - t2) // 2
        cv2.rectangle(img, (x1, t2), (x1 + legs, knee), bc, -1)
        cv2.rectangle(img, (x2 - legs, t2), (x2, knee), bc, -1)
        if knee < foot:
            cv2.rectangle(img, (x1 + 1, knee), (x1 + legs - 1, foot), skin, -1)
            cv2.rectangle(img, (x2 - legs + 1, knee), (x2 - 1, foot), skin, -1)


def _visible_fraction(boxes: list[tuple[int, int, int, int]], h: int, w: int) -> list[float]:
    """Share of each box not covered by boxes after it in the list (those are drawn on top)."""
    mask = np.zeros((h // 4 + 1, w // 4 + 1), bool)
    vis = [0.0] * len(boxes)
    for i in range(len(boxes) - 1, -1, -1):
        x1, y1, x2, y2 = (v // 4 for v in boxes[i])
        region = mask[y1 : y2 + 1, x1 : x2 + 1]
        vis[i] = 1.0 - region.mean() if region.size else 0.0
        region[:] = True
    return vis


def make_image(index: int, seed: int, crowd: bool = False):
    """Image ``index`` of the dataset with ``seed``: (BGR image, rows of class + xyxy px, scene).

    ``crowd``: a 1920x1080 frame of 100-140 people plus 5-7 dense groups; 15-65 of them are labelled (the rest
    too small or hidden), and the slicing benchmark keeps the frames with 50 or more."""
    rng = np.random.default_rng([seed, index])
    w, h, _ = SIZES[rng.choice(len(SIZES), p=[s[2] for s in SIZES])]
    if crowd:
        w, h = 1920, 1080
    scene = int(rng.choice(len(SCENES), p=SCENE_P))
    img, horizon = _background(rng, w, h, scene)
    people = []  # (foot, x, height, cls)
    n_groups = rng.integers(5, 8) if crowd else rng.integers(0, 3)
    for _ in range(int(rng.integers(100, 140) if crowd else rng.integers(3, 18))):
        depth = rng.uniform(0.03, 1.0) ** 1.7  # most people are far away, a few are near
        people.append((int(horizon + depth * (h - horizon) * 1.05), int(rng.uniform(0, w)), None))
    for _ in range(n_groups):  # dense, occluding groups at one depth
        foot, cx = int(rng.uniform(horizon + 0.05 * h, h)), rng.uniform(0.1 * w, 0.9 * w)
        scale = (foot - horizon) / (h - horizon)
        for _ in range(int(rng.integers(3, 9))):
            people.append((foot + int(rng.normal(0, 0.02 * h)), int(cx + rng.normal(0, 0.12 * h * scale + 5)), None))
    figures = []  # far first: near figures are drawn over far ones
    for foot, x, _ in sorted(people):
        depth = (foot - horizon) / max(1, h - horizon)
        height = int(np.clip(depth, 0.0, 1.0) * h * 0.5 * rng.uniform(0.85, 1.15))
        if height >= 12:
            width = max(4, int(height * rng.uniform(0.28, 0.36)))
            figures.append((x, min(foot, h + height // 4), height, width, int(rng.choice(len(CLASSES), p=CLASS_P))))
    boxes = [(max(0, x - wd // 2), max(0, f - ht), min(w, x + wd // 2 + 1), min(h, f + 1)) for x, f, ht, wd, _ in figures]
    rows = []
    for (x, foot, height, width, cls), box, vis in zip(figures, boxes, _visible_fraction(boxes, h, w)):
        _draw_figure(img, x, foot, height, width, cls, rng)
        # Annotators label people who can be seen: at least 35% visible, inside the frame.
        if vis >= 0.35 and box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            rows.append((cls, *box))
    return img, rows, scene


def _write_one(job) -> dict:
    index, seed, out, split, crowd = job
    img, rows, scene = make_image(index, seed, crowd)
    h, w = img.shape[:2]
    name = f"{split}_{index:05d}"
    cv2.imwrite(str(out / "images" / split / f"{name}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 88])
    lines = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
             for c, x1, y1, x2, y2 in rows]
    (out / "labels" / split / f"{name}.txt").write_text("".join(s + "\n" for s in lines))
    return {"image": f"images/{split}/{name}.jpg", "split": split, "scene": SCENES[scene], "width": w, "height": h,
            "boxes": len(rows)}


def generate(out: Path, images: int = 200, seed: int = 0, val_fraction: float = 0.2, workers: int = 2,
             crowd: bool = False) -> Path:
    """Write the dataset under ``out``; returns the data.yaml path. Same arguments, same bytes.
    ``crowd``: every image a dense 1920x1080 crowd (``make_image``)."""
    out = Path(out)
    n_val = int(round(images * val_fraction))
    jobs = [(i, seed, out, "val" if i >= images - n_val else "train", crowd) for i in range(images)]
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            meta = list(pool.map(_write_one, jobs, chunksize=8))
    else:
        meta = [_write_one(j) for j in jobs]
    with open(out / "meta.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(meta[0]))
        writer.writeheader()
        writer.writerows(meta)
    data = {"path": ".", "train": "images/train", "val": "images/val", "nc": len(CLASSES), "names": CLASSES}
    header = f"# Synthetic pedestrian-clothing set: {images} images, seed {seed}. meta.csv maps image -> scene.\n"
    (out / "data.yaml").write_text(header + yaml.safe_dump(data, sort_keys=False))
    return out / "data.yaml"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m detect.data.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the dataset's folder")
    p.add_argument("--images", type=int, default=200, help="images in all (train + val)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of the images in the val split")
    p.add_argument("--workers", type=int, default=2, help="processes drawing images")
    p.add_argument("--crowd", action="store_true", help="every image a dense 1920x1080 crowd of 45-70 people")
    args = p.parse_args(argv)
    if args.images < 2 or not 0 < args.val_fraction < 1:
        p.error("need --images >= 2 and 0 < --val-fraction < 1")
    path = generate(args.out, args.images, args.seed, args.val_fraction, args.workers, args.crowd)
    print(f"wrote {args.images} images -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
