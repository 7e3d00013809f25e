"""``data.yaml``: the ultralytics-style dataset description every stage reads.

Accepted shape::

    path: .                      # root; relative to the yaml's folder when relative
    train: images/train          # folder, .txt list of images, or a list of those
    val: [images/val, extra.txt]
    train: {images: imgs/train, coco: annotations/train.json}   # COCO JSON labels
    val:   {images: JPEGImages,  voc: Annotations}               # Pascal VOC XML labels
    names: [person, car]         # or {0: person, 1: car}
    nc: 2                        # optional; must agree with names
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from detect.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class SplitSource:
    """Where one split's images and labels come from."""

    images: list[Path]
    format: str = "yolo"  # yolo | coco | voc
    labels: Path | None = None  # COCO json file or VOC xml folder


@dataclass
class DataConfig:
    file: Path
    root: Path
    names: list[str]
    splits: dict[str, SplitSource] = field(default_factory=dict)
    raw: dict = field(default_factory=dict)

    @property
    def nc(self) -> int:
        return len(self.names)

    def split(self, name: str) -> SplitSource:
        if name not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(f"{self.file}: no '{name}' split (it has: {have})")
        return self.splits[name]


def load_data_config(file: str | Path) -> DataConfig:
    file = Path(file)
    if not file.is_file():
        raise DataError(f"{file}: no such data file (expected a data.yaml)")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        raise DataError(f"{file}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise DataError(f"{file}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{file}: expected a mapping with 'names' and 'train'/'val' keys")
    names = _names(raw, file)
    path = raw.get("path") or "."
    if not isinstance(path, str):
        raise DataError(f"{file}: 'path' must be a folder path (a string), got {path!r}")
    root = Path(path)
    if not root.is_absolute():
        root = (file.parent / root).resolve()
    splits = {}
    for split in ("train", "val", "test"):
        if raw.get(split):
            splits[split] = _split_source(raw[split], root, file, split)
    if not splits:
        raise DataError(f"{file}: no 'train', 'val' or 'test' entry")
    return DataConfig(file=file, root=root, names=names, splits=splits, raw=raw)


def _names(raw: dict, file: Path) -> list[str]:
    names = raw.get("names")
    if names is None:
        raise DataError(f"{file}: no 'names' entry; add the class names as a list, e.g. names: [person, car]")
    if isinstance(names, dict):
        if not all(isinstance(k, int) or (isinstance(k, str) and k.isdigit()) for k in names):
            raise DataError(f"{file}: 'names' as a mapping needs class indices as keys (0: person), got "
                            f"{', '.join(repr(k) for k in list(names)[:3])}")
        keys = sorted(int(k) for k in names)
        if keys != list(range(len(keys))):
            raise DataError(f"{file}: 'names' keys must be 0..{len(keys) - 1} without gaps, got {keys}")
        names = [names[k] if k in names else names[str(k)] for k in keys]
    if not isinstance(names, list) or not names:
        raise DataError(f"{file}: 'names' must be a non-empty list or a dict of index: name")
    bad = [n for n in names if not isinstance(n, str | int | float) or isinstance(n, bool)]
    if bad:
        raise DataError(f"{file}: every entry of 'names' must be a name (a string), got {bad[0]!r}")
    if "nc" in raw:
        nc = raw["nc"]
        if not isinstance(nc, int) or isinstance(nc, bool):
            raise DataError(f"{file}: 'nc' must be a whole number (the number of classes), got {nc!r}")
        if nc != len(names):
            raise DataError(f"{file}: nc is {nc} but {len(names)} names are given; make them agree")
    return [str(n) for n in names]


def _split_source(entry, root: Path, file: Path, split: str) -> SplitSource:
    if isinstance(entry, dict):
        if "images" not in entry:
            raise DataError(f"{file}: '{split}' mapping needs an 'images' folder")
        images = _collect_images(entry["images"], root, file, split)
        for fmt in ("coco", "voc"):
            if fmt in entry:
                labels = _resolve(entry[fmt], root, file, f"'{split}' {fmt}")
                if not labels.exists():
                    raise DataError(f"{file}: '{split}' {fmt} labels {labels} do not exist")
                return SplitSource(images, fmt, labels)
        return SplitSource(images)
    return SplitSource(_collect_images(entry, root, file, split))


def _resolve(p, root: Path, file: Path, what: str) -> Path:
    if not isinstance(p, str):
        raise DataError(f"{file}: {what} must be a path (a string), got {p!r}")
    q = Path(p)
    return q if q.is_absolute() else root / q


def walk_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, following links to folders but never around a loop; sorted."""
    found, seen = [], set()
    for top, dirs, files in os.walk(folder, followlinks=True):
        try:
            st = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:  # a link back to a folder already walked
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        found += [Path(top) / f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def _collect_images(entry, root: Path, file: Path, split: str) -> list[Path]:
    images: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        p = _resolve(item, root, file, f"'{split}'")
        if p.is_dir():
            images += walk_images(p)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text(encoding="utf-8-sig", errors="surrogateescape").splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    images.append(q if q.is_absolute() else (p.parent / q).resolve())
        else:
            raise DataError(f"{file}: '{split}' entry {item!r} -> {p} is not a folder or a .txt image list")
    if not images:
        raise DataError(f"{file}: '{split}' has no images (looked in {entry!r} under {root})")
    return images


def yolo_label_path(image: Path) -> Path:
    """``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (the last ``images`` part is swapped)."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")
