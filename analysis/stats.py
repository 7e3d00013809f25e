"""Dataset statistics from the scan tables. Every function returns JSON-ready plain types.

Sizes "at input size" are what the network sees: each image scaled so its long side is
``img`` (the letterbox used by training and evaluation), then COCO's small (< 32^2 px),
medium (< 96^2) and large areas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp, wasserstein_distance

SMALL, MEDIUM = 32**2, 96**2
FEW_BOXES_SHARE = 0.01  # a class with under 1% of the boxes is "rare"


def input_scale(images: pd.DataFrame, boxes: pd.DataFrame, img: int) -> np.ndarray:
    """Per-box factor from original pixels to network pixels (long side -> img)."""
    long_side = np.maximum(images["width"].to_numpy(), images["height"].to_numpy())
    return img / long_side[boxes["image"].to_numpy()]


def split_counts(images: pd.DataFrame, boxes: pd.DataFrame, names: list[str]) -> dict:
    out = {}
    for split, imgs in images.groupby("split", sort=False):
        b = boxes[boxes["split"] == split]
        counts = np.bincount(b["cls"].to_numpy(), minlength=len(names))
        out[split] = {
            "images": int(len(imgs)),
            "instances": int(len(b)),
            "background_images": int((imgs["boxes"] == 0).sum()),
            "per_class": {n: int(c) for n, c in zip(names, counts)},
        }
    return out


def image_sizes(images: pd.DataFrame, top: int = 12) -> dict:
    sizes = images.groupby(["width", "height"]).size().sort_values(ascending=False)
    n = len(images)
    ar = images["height"] / images["width"]
    return {
        "sizes": [
            {"width": int(w), "height": int(h), "count": int(c), "share": c / n}
            for (w, h), c in sizes.head(top).items()
        ],
        "distinct_sizes": int(len(sizes)),
        "orientation": {
            "landscape": float((ar < 1).mean()),
            "portrait": float((ar > 1).mean()),
            "square": float((ar == 1).mean()),
        },
        "share_16_9": float(((ar - 9 / 16).abs() < 0.01).mean() + ((ar - 16 / 9).abs() < 0.01).mean()),
        "most_common": {
            "width": int(sizes.index[0][0]),
            "height": int(sizes.index[0][1]),
            "share": float(sizes.iloc[0] / n),
        },
    }


def class_stats(boxes: pd.DataFrame, names: list[str]) -> dict:
    counts = np.bincount(boxes["cls"].to_numpy(), minlength=len(names)).astype(int)
    total = int(counts.sum())
    nonzero = counts[counts > 0]
    head = int(counts.argmax()) if total else 0
    return {
        "counts": {n: int(c) for n, c in zip(names, counts)},
        "head_class": names[head] if total else None,
        "head_share": float(counts[head] / total) if total else 0.0,
        "imbalance_ratio": float(nonzero.max() / nonzero.min()) if len(nonzero) else None,
        "rare_classes": [n for n, c in zip(names, counts) if c < FEW_BOXES_SHARE * total],
        "empty_classes": [n for n, c in zip(names, counts) if c == 0],
    }


def density(images: pd.DataFrame, top: int = 10) -> dict:
    n = images["boxes"].to_numpy()
    dense = images.nlargest(top, "boxes")
    return {
        "mean": float(n.mean()),
        "median": float(np.median(n)),
        "p90": float(np.percentile(n, 90)),
        "max": int(n.max()),
        "densest": [
            {"path": p, "split": s, "boxes": int(b)} for p, s, b in zip(dense["path"], dense["split"], dense["boxes"])
        ],
    }


def _area_shares(area: np.ndarray) -> dict:
    if not len(area):
        return {"small": 0.0, "medium": 0.0, "large": 0.0}
    return {
        "small": float((area < SMALL).mean()),
        "medium": float(((area >= SMALL) & (area < MEDIUM)).mean()),
        "large": float((area >= MEDIUM).mean()),
    }


def _percentiles(x: np.ndarray) -> dict:
    if not len(x):
        return {}
    q = np.percentile(x, [5, 25, 50, 75, 95])
    return {f"p{p}": float(v) for p, v in zip((5, 25, 50, 75, 95), q)}


def box_sizes(images: pd.DataFrame, boxes: pd.DataFrame, img: int) -> dict:
    s = input_scale(images, boxes, img)
    w, h = boxes["w_px"].to_numpy(), boxes["h_px"].to_numpy()
    area_in = w * h * s**2
    return {
        "width_px": _percentiles(w),
        "height_px": _percentiles(h),
        "sqrt_area_px": _percentiles(np.sqrt(w * h)),
        "relative_width": _percentiles(boxes["w"].to_numpy()),
        "relative_height": _percentiles(boxes["h"].to_numpy()),
        "sqrt_area_at_input": _percentiles(np.sqrt(area_in)),
        "coco_at_input": _area_shares(area_in),
        "coco_native": _area_shares(w * h),
        "input_size": img,
        "aspect_ratio_w_over_h": _percentiles(w / np.maximum(h, 1e-9)),
    }


def _pair_counts(xyxy: np.ndarray, cls: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(pairs with IoU > 0, pairs with IoU > 0.5, per-box 'overlaps another' flags, per-box 'a box of its
    own class covers it at IoU > 0.5' flags) for one image."""
    n = len(xyxy)
    if n < 2:
        return 0, 0, np.zeros(n, bool), np.zeros(n, bool)
    lt = np.maximum(xyxy[:, None, :2], xyxy[None, :, :2])
    rb = np.minimum(xyxy[:, None, 2:], xyxy[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = (xyxy[:, 2:] - xyxy[:, :2]).prod(1)
    iou = inter / (area[:, None] + area[None, :] - inter)
    np.fill_diagonal(iou, 0)
    upper = np.triu(iou, 1)
    same = ((iou > 0.5) & (cls[:, None] == cls[None, :])).any(1)
    return int((upper > 0).sum()), int((upper > 0.5).sum()), (iou > 0).any(1), same


def occlusion(images: pd.DataFrame, boxes: pd.DataFrame) -> dict:
    """Overlap between boxes of the same image: a proxy for occlusion in crowds."""
    xyxy = (
        np.stack(
            [
                boxes["cx"] - boxes["w"] / 2,
                boxes["cy"] - boxes["h"] / 2,
                boxes["cx"] + boxes["w"] / 2,
                boxes["cy"] + boxes["h"] / 2,
            ],
            1,
        )
        if len(boxes)
        else np.zeros((0, 4))
    )
    # Pixels, so IoU is right for non-square images too.
    wh = images[["width", "height"]].to_numpy()[boxes["image"].to_numpy()] if len(boxes) else np.zeros((0, 2))
    xyxy = xyxy * np.concatenate([wh, wh], 1)
    order = np.argsort(boxes["image"].to_numpy(), kind="stable")
    owners = boxes["image"].to_numpy()[order]
    starts = np.searchsorted(owners, np.arange(len(images)))
    ends = np.searchsorted(owners, np.arange(len(images)), side="right")
    any_pairs = np.zeros(len(images), int)
    big_pairs = np.zeros(len(images), int)
    overlapped, crowded = np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)
    cls = boxes["cls"].to_numpy() if len(boxes) else np.zeros(0, int)
    for i in np.flatnonzero(ends - starts > 1):
        idx = order[starts[i] : ends[i]]
        any_pairs[i], big_pairs[i], overlapped[idx], crowded[idx] = _pair_counts(xyxy[idx], cls[idx])
    return {
        "pairs_iou_gt_0_per_image": {"mean": float(any_pairs.mean()), "max": int(any_pairs.max(initial=0))},
        "pairs_iou_gt_0.5_per_image": {"mean": float(big_pairs.mean()), "max": int(big_pairs.max(initial=0))},
        "share_boxes_overlapped": float(overlapped.mean()) if len(boxes) else 0.0,
        "images_with_iou_gt_0.5_pair": float((big_pairs > 0).mean()),
        # what NMS sees: it suppresses within a class, so a garment inside its wearer's box is no crowd
        "share_boxes_same_class_iou_gt_0.5": float(crowded.mean()) if len(boxes) else 0.0,
        "_per_image_pairs": any_pairs.tolist(),  # for the plot; dropped from summary.json
    }


def centre_heatmap(boxes: pd.DataFrame, bins: int = 24) -> np.ndarray:
    h, _, _ = np.histogram2d(boxes["cy"], boxes["cx"], bins=bins, range=[[0, 1], [0, 1]])
    return h


def scenes(images: pd.DataFrame, boxes: pd.DataFrame, names: list[str], column: str) -> dict:
    col = images[column].fillna("(unmatched)").astype(str)
    box_scene = col.to_numpy()[boxes["image"].to_numpy()] if len(boxes) else np.array([], dtype=object)
    table = pd.crosstab(
        pd.Series(box_scene, name=column), pd.Series(boxes["cls"].map(dict(enumerate(names))).to_numpy(), name="class")
    )
    per_images = col.value_counts()
    per_boxes = pd.Series(box_scene).value_counts()
    return {
        "column": column,
        "images": {k: int(v) for k, v in per_images.items()},
        "boxes": {k: int(per_boxes.get(k, 0)) for k in per_images.index},
        "imbalance_ratio": float(per_images.max() / per_images.min()),
        "class_by_scene": {s: {c: int(v) for c, v in row.items() if v} for s, row in table.iterrows()},
    }


def split_shift(images: pd.DataFrame, boxes: pd.DataFrame, names: list[str], a: str, b: str, img: int) -> dict:
    """How far split ``b`` is from ``a``: class-share differences and box-size distribution distance."""
    out = {"from": a, "to": b}
    shares = {}
    for split in (a, b):
        c = np.bincount(boxes.loc[boxes["split"] == split, "cls"], minlength=len(names)).astype(float)
        shares[split] = c / max(c.sum(), 1)
    diff = shares[b] - shares[a]
    out["class_share_difference"] = {n: float(d) for n, d in zip(names, diff)}
    out["max_class_share_difference"] = float(np.abs(diff).max())
    s = np.sqrt(boxes["w_px"] * boxes["h_px"]).to_numpy() * input_scale(images, boxes, img)
    sa, sb = s[(boxes["split"] == a).to_numpy()], s[(boxes["split"] == b).to_numpy()]
    if len(sa) and len(sb):
        out["size_wasserstein_px"] = float(wasserstein_distance(sa, sb))
        out["size_ks_statistic"] = float(ks_2samp(sa, sb).statistic)
    return out


def mosaic_cut_share(images: pd.DataFrame, boxes: pd.DataFrame, seed: int = 0) -> float:
    """Share of boxes a mosaic would cut: each image cropped at a random centre in its middle half."""
    if not len(boxes):
        return 0.0
    rng = np.random.default_rng(seed)
    cut_x = rng.uniform(0.25, 0.75, len(images))[boxes["image"].to_numpy()]
    cut_y = rng.uniform(0.25, 0.75, len(images))[boxes["image"].to_numpy()]
    x1, x2 = boxes["cx"] - boxes["w"] / 2, boxes["cx"] + boxes["w"] / 2
    y1, y2 = boxes["cy"] - boxes["h"] / 2, boxes["cy"] + boxes["h"] / 2
    cut = ((x1 < cut_x) & (cut_x < x2)) | ((y1 < cut_y) & (cut_y < y2))
    return float(cut.mean())
