"""Scan a dataset into two pandas tables: one row per image, one row per box.

Reading goes through the shared validator (``detect.data.labels.scan_split``), so analysis,
training and evaluation see the same boxes and report the same problems.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from detect.data.config import DataConfig, DataError, yolo_label_path
from detect.data.images import safe_name
from detect.data.labels import LabelReport, scan_split
from detect.data.meta import read_meta


@dataclass
class Scan:
    images: pd.DataFrame  # split, path, width, height, boxes, [meta columns]
    boxes: pd.DataFrame  # split, image (row of images), cls, cx, cy, w, h (normalised), w_px, h_px
    reports: dict[str, LabelReport]
    orphan_labels: dict[str, list[str]] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def scan(cfg: DataConfig, splits: list[str], workers: int = 2, meta: Path | None = None, progress: bool = True) -> Scan:
    t0 = time.perf_counter()
    image_parts, box_parts, reports, orphans, excluded = [], [], {}, {}, {}
    offset = 0
    for split in splits:
        samples, report = scan_split(cfg, split, workers=workers, progress=progress)
        reports[split] = report
        excluded[split] = len(cfg.split(split).images) - len(samples)
        if cfg.split(split).format == "yolo":
            orphans[split] = _orphan_labels(cfg, split)
        n = np.array([len(s.classes) for s in samples], dtype=np.int64)
        image_parts.append(
            pd.DataFrame(
                {
                    "split": split,
                    "path": [safe_name(s.path) for s in samples],  # printable: names may hold undecodable bytes
                    "width": np.array([s.width for s in samples], dtype=np.int64),
                    "height": np.array([s.height for s in samples], dtype=np.int64),
                    "boxes": n,
                }
            )
        )
        if n.sum():
            xywh = np.concatenate([s.boxes for s in samples]).astype(np.float64)
            owner = np.repeat(np.arange(len(samples)) + offset, n)
            widths = np.repeat([s.width for s in samples], n)
            heights = np.repeat([s.height for s in samples], n)
            box_parts.append(
                pd.DataFrame(
                    {
                        "split": split,
                        "image": owner,
                        "cls": np.concatenate([s.classes for s in samples]),
                        "cx": xywh[:, 0],
                        "cy": xywh[:, 1],
                        "w": xywh[:, 2],
                        "h": xywh[:, 3],
                        "w_px": xywh[:, 2] * widths,
                        "h_px": xywh[:, 3] * heights,
                    }
                )
            )
        offset += len(samples)
    images = pd.concat(image_parts, ignore_index=True)
    if images.empty:
        raise DataError(f"{cfg.file}: the dataset is empty: no usable images in {', '.join(splits)}")
    boxes = pd.concat(box_parts, ignore_index=True) if box_parts else _empty_boxes()
    if meta is not None:
        images = _join_meta(images, meta, cfg.root)
    return Scan(images, boxes, reports, orphans, excluded, time.perf_counter() - t0)


def _empty_boxes() -> pd.DataFrame:
    cols = {
        "split": str,
        "image": np.int64,
        "cls": np.int64,
        **{c: float for c in ("cx", "cy", "w", "h", "w_px", "h_px")},
    }
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols.items()})


def _orphan_labels(cfg: DataConfig, split: str) -> list[str]:
    """Label files in the split's label folders that belong to no image."""
    expected = {yolo_label_path(p) for p in cfg.split(split).images}
    folders = {p.parent for p in expected if p.parent.is_dir()}
    found = {p for d in folders for p in d.glob("*.txt")}
    return sorted(safe_name(p) for p in found - expected)


def _join_meta(images: pd.DataFrame, meta: Path, root: Path) -> pd.DataFrame:
    """Attach the columns of a CSV whose first column names the image (``detect.data.meta``)."""
    attrs = read_meta(meta, list(images["path"]), root)
    attrs = attrs.drop(columns=[c for c in attrs.columns if c in images.columns])
    out = pd.concat([images, attrs], axis=1)
    out.attrs["meta_unmatched"] = attrs.attrs["unmatched"]
    out.attrs["meta_columns"] = list(attrs.columns)
    return out
