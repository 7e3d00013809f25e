"""Label reading and validation, shared by every stage.

YOLO txt, COCO JSON and Pascal VOC XML are read into one list of ``Sample`` (normalised
cx, cy, w, h boxes + class ids, relative to the image as displayed, i.e. after EXIF
rotation). Every problem is recorded as an ``Issue`` naming the file and line and what was
done: a line is *skipped*, a box *clipped*, a duplicate *removed*, an image *excluded* or
*used as background*. Nothing is dropped without an Issue; ``LabelReport`` counts them.

A YOLO line of class ``-1`` is an *ignore region* (``Sample.ignore``): training neither teaches an object
nor background there (an uncertain pseudo-label, a crowd no one boxed; detect/loss.py). It is not ground
truth: evaluation, analysis and sampling see only the classes 0..nc-1.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from detect.data.config import DataConfig, DataError, SplitSource, yolo_label_path
from detect.data.images import ImageError, inspect_image, safe_name

IGNORE_CLASS = -1  # a YOLO label line of this class marks an ignore region
CACHE_VERSION = 6  # bump whenever the validator's rules change: it is part of the cache key
# Labels written with 6 decimals overshoot the border by up to 5e-7; that is rounding, not an error.
ROUNDING_TOLERANCE = 1e-4

# kind -> what happens to the data; also the order of the printed summary
ACTIONS = {
    "corrupt_image": "image excluded",
    "unreadable": "image excluded",
    "too_large": "image excluded",
    "missing_image": "annotation ignored",
    "malformed": "line skipped",
    "non_finite": "line skipped",
    "bad_class": "line skipped",
    "unknown_category": "box skipped",
    "non_positive_size": "line skipped",
    "outside": "line skipped",
    "out_of_bounds": "box clipped to the image",
    "duplicate": "duplicate removed",
    "crowd": "crowd box skipped",
    "missing_label": "image used as background",
    "empty_label": "image used as background",
    "exif_rotated": "EXIF orientation applied; labels read against the rotated image",
    "converted_image": "converted to 8-bit 3-channel when loaded",
    "wrong_suffix": "used; its suffix does not match its format",
    "trailing_data": "used; the bytes after its end are ignored",
    "polygon": "polygon converted to its bounding box",
}
HOW_TO_FIX = {
    "corrupt_image": "re-export or remove the image",
    "unreadable": "check the file's permissions and links",
    "non_finite": "coordinates must be finite numbers",
    "malformed": "each line must be 'class cx cy w h' with numbers",
    "bad_class": "class ids must be integers in 0..nc-1 (or -1: an ignore region); check 'names' in data.yaml",
    "unknown_category": "add the category to 'names' in data.yaml or remove the annotation",
    "non_positive_size": "width and height must be > 0",
    "outside": "the box lies outside the image; fix or remove it",
}


@dataclass
class Issue:
    kind: str
    file: str
    line: int | None
    detail: str

    def __str__(self) -> str:
        where = f"{safe_name(self.file)}:{self.line}" if self.line else safe_name(self.file)
        fix = HOW_TO_FIX.get(self.kind)
        return f"{where}: {self.detail} -> {ACTIONS[self.kind]}" + (f" ({fix})" if fix else "")


@dataclass
class LabelReport:
    issues: list[Issue] = field(default_factory=list)

    def add(self, kind: str, file, line: int | None, detail: str) -> None:
        self.issues.append(Issue(kind, str(file), line, detail))

    def counts(self) -> dict[str, int]:
        c = Counter(i.kind for i in self.issues)
        return {k: c[k] for k in ACTIONS if c[k]}

    def lines(self, per_kind: int = 5) -> list[str]:
        """Human summary: a count per kind and the first few occurrences of each."""
        out = []
        for kind, n in self.counts().items():
            out.append(f"{n} x {kind} ({ACTIONS[kind]})")
            shown = [i for i in self.issues if i.kind == kind][:per_kind]
            out += [f"    {i}" for i in shown]
            if n > len(shown):
                out.append(f"    ... and {n - len(shown)} more")
        return out

    def write(self, path: Path) -> None:
        path.write_text("".join(f"{i.kind}\t{i}\n" for i in self.issues), encoding="utf-8")


@dataclass
class Sample:
    path: Path
    height: int
    width: int
    classes: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float32 normalised cx, cy, w, h
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # regions, as ``boxes``


# --------------------------------------------------------------------------- images
def read_image_header(path: Path, report: LabelReport) -> tuple[int, int] | None:
    """(h, w) as displayed if the image decodes; ``None`` (and an Issue) if unusable."""
    try:
        hw, notes = inspect_image(path)
    except ImageError as e:
        report.add(e.kind, path, None, e.detail)
        return None
    for kind, detail in notes:
        report.add(kind, path, None, detail)
    return hw


# --------------------------------------------------------------------------- boxes
def _finish_boxes(rows: list[tuple[int, int, float, float, float, float]], file: Path, report: LabelReport):
    """rows of (line, cls, x1, y1, x2, y2) normalised -> clipped, de-duplicated cx,cy,w,h arrays."""
    classes, boxes, seen = [], [], set()
    for line, cls, x1, y1, x2, y2 in rows:
        c = (min(max(x1, 0.0), 1.0), min(max(y1, 0.0), 1.0), min(max(x2, 0.0), 1.0), min(max(y2, 0.0), 1.0))
        if c[2] <= c[0] or c[3] <= c[1]:
            report.add("outside", file, line, f"box {x1:.4g},{y1:.4g},{x2:.4g},{y2:.4g} has no area inside the image")
            continue
        excess = max(-x1, -y1, x2 - 1.0, y2 - 1.0)
        if excess > ROUNDING_TOLERANCE:
            report.add("out_of_bounds", file, line, f"box reaches {excess:.4g} outside [0, 1]")
        key = (cls, *(round(v, 6) for v in c))
        if key in seen:
            report.add("duplicate", file, line, "same class and box as an earlier line")
            continue
        seen.add(key)
        classes.append(cls)
        boxes.append(((c[0] + c[2]) / 2, (c[1] + c[3]) / 2, c[2] - c[0], c[3] - c[1]))
    return np.array(classes, dtype=np.int64), np.array(boxes, dtype=np.float32).reshape(-1, 4)


def parse_yolo_label(path: Path, nc: int, report: LabelReport):
    """One YOLO txt file -> (classes, boxes), ignore regions as class ``IGNORE_CLASS``. A missing or empty
    file is a background image."""
    if not path.is_file():
        report.add("missing_label", path, None, "no label file")
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    rows, seen_lines = [], 0
    for n, text in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), 1):
        parts = text.split()
        if not parts:
            continue
        seen_lines += 1
        polygon = len(parts) >= 7 and len(parts) % 2 == 1  # class x1 y1 x2 y2 x3 y3 ... (YOLO segmentation)
        if len(parts) != 5 and not polygon:
            report.add("malformed", path, n, f"{len(parts)} columns, expected 5 (or a class and a polygon)")
            continue
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            report.add("malformed", path, n, f"non-numeric value in {text.strip()!r}")
            continue
        if not all(np.isfinite(vals)):
            report.add("non_finite", path, n, f"non-finite value in {text.strip()!r}")
            continue
        cls = vals[0]
        if not cls.is_integer() or not (0 <= cls < nc or cls == IGNORE_CLASS):
            report.add("bad_class", path, n, f"class {parts[0]} not in 0..{nc - 1} (nor -1, an ignore region)")
            continue
        if polygon:
            xs, ys = vals[1::2], vals[2::2]
            report.add("polygon", path, n, f"{len(xs)}-point polygon")
            cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
        else:
            cx, cy, w, h = vals[1:]
        if not (w > 0 and h > 0):
            report.add("non_positive_size", path, n, f"width {w:g}, height {h:g}")
            continue
        rows.append((n, int(cls), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    if not seen_lines:
        report.add("empty_label", path, None, "no boxes")
    return _finish_boxes(rows, path, report)


def read_coco(json_path: Path, images: list[Path], names: list[str], report: LabelReport):
    """COCO instances JSON -> {image path: (classes, boxes)}; categories matched to ``names`` by name."""
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{json_path}: not readable COCO JSON ({e})") from None
    index = {n: i for i, n in enumerate(names)}
    cats = {c["id"]: c["name"] for c in doc.get("categories", [])}
    by_name = {Path(p).name: p for p in images}
    info, rows = {}, {}
    for im in doc.get("images", []):
        p = by_name.get(Path(im["file_name"]).name)
        if p is None:
            report.add("missing_image", json_path, None, f"image {im['file_name']!r} not found in the images folder")
            continue
        info[im["id"]] = (p, float(im["width"]), float(im["height"]))
        rows[p] = []
    for k, a in enumerate(doc.get("annotations", [])):
        if a.get("image_id") not in info:
            continue
        p, w, h = info[a["image_id"]]
        name = cats.get(a.get("category_id"), str(a.get("category_id")))
        where = f"annotation #{k} (id {a.get('id')})"
        if a.get("iscrowd"):
            report.add("crowd", json_path, None, f"{where}: iscrowd=1")
            continue
        if name not in index:
            report.add("unknown_category", json_path, None, f"{where}: category {name!r} not in names")
            continue
        x, y, bw, bh = a["bbox"]
        if bw <= 0 or bh <= 0:
            report.add("non_positive_size", json_path, None, f"{where}: bbox {a['bbox']}")
            continue
        rows[p].append((k + 1, index[name], x / w, y / h, (x + bw) / w, (y + bh) / h))
    return {p: _finish_boxes(r, json_path, report) for p, r in rows.items()}


def parse_voc(xml_path: Path, names: list[str], report: LabelReport):
    """One Pascal VOC XML file -> (classes, boxes); 'difficult' objects are kept."""
    if not xml_path.is_file():
        report.add("missing_label", xml_path, None, "no VOC annotation file")
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    try:
        root = ET.parse(xml_path).getroot()
        w = float(root.findtext("size/width"))
        h = float(root.findtext("size/height"))
    except (ET.ParseError, TypeError, ValueError) as e:
        report.add("malformed", xml_path, None, f"unreadable VOC XML ({e})")
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for k, obj in enumerate(root.iter("object"), 1):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            report.add("unknown_category", xml_path, None, f"object #{k}: {name!r} not in names")
            continue
        try:
            x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            report.add("malformed", xml_path, None, f"object #{k}: bndbox is incomplete")
            continue
        if x2 <= x1 or y2 <= y1:
            report.add("non_positive_size", xml_path, None, f"object #{k}: {x1},{y1},{x2},{y2}")
            continue
        rows.append((k, index[name], x1 / w, y1 / h, x2 / w, y2 / h))
    return _finish_boxes(rows, xml_path, report)


# --------------------------------------------------------------------------- scanning
def _label_file(src: SplitSource, image: Path) -> Path | None:
    if src.format == "yolo":
        return yolo_label_path(image)
    if src.format == "voc":
        return src.labels / f"{image.stem}.xml"
    return None


def _fingerprint(src: SplitSource, nc: int, names: list[str]) -> str:
    h = hashlib.sha1(f"{CACHE_VERSION}|{src.format}|{names}".encode())
    files = list(src.images) + [f for f in (_label_file(src, p) for p in src.images) if f]
    if src.labels and src.labels.is_file():
        files.append(src.labels)
    for f in files:
        try:
            st = f.stat()
            h.update(os.fsencode(f) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError as e:  # missing, a link loop, no permission: the scan reports it per file
            h.update(os.fsencode(f) + f"|{e.errno}\n".encode())
    return h.hexdigest()


def cache_dir() -> Path:
    return Path(os.environ.get("DETECT_CACHE", Path.home() / ".cache" / "detect"))


def _scan_one(job: tuple) -> tuple[Sample | None, list[Issue]]:
    """Header + labels of one image; any error of that one file becomes an Issue, never an exception."""
    try:
        return _scan_one_unguarded(job)
    except Exception as e:  # noqa: BLE001 - one odd file (ELOOP, permissions, I/O error) must not stop a scan
        reason = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
        return None, [Issue("unreadable", str(job[0]), None, f"cannot be read ({reason})")]


def _scan_one_unguarded(job: tuple) -> tuple[Sample | None, list[Issue]]:
    image, fmt, label_file, names, coco_entry = job
    local = LabelReport()
    hw = read_image_header(image, local)
    if hw is None:  # excluded: its labels are not read, so they are not reported twice
        return None, local.issues
    if fmt == "coco":
        if coco_entry is None:
            local.add("missing_label", image, None, "image not listed in the COCO JSON")
            coco_entry = (np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
        classes, boxes = coco_entry
    elif fmt == "voc":
        classes, boxes = parse_voc(label_file, names, local)
    else:
        classes, boxes = parse_yolo_label(label_file, len(names), local)
        region = classes == IGNORE_CLASS
        if region.any():
            return Sample(image, hw[0], hw[1], classes[~region], boxes[~region], boxes[region]), local.issues
    return Sample(image, hw[0], hw[1], classes, boxes), local.issues


# Below this many images a process pool costs more to start than it saves.
_PROCESS_POOL_MIN = 2000


def scan_split(cfg: DataConfig, split: str, workers: int = 2, use_cache: bool = True, progress: bool = True):
    """All samples of a split and the report of every problem found; cached by sizes and mtimes.

    Headers and label files are read in ``workers`` processes for large splits.
    """
    src = cfg.split(split)
    key = _fingerprint(src, cfg.nc, cfg.names)
    cache = cache_dir() / f"labels-{key}.npz"
    if use_cache and cache.is_file():
        try:
            return _read_cache(cache)
        except Exception as e:  # noqa: BLE001 - 0-byte, truncated or foreign file: rebuild it
            print(f"warning: label cache {cache} is unreadable ({type(e).__name__}); rebuilding it", file=sys.stderr)
    report = LabelReport()
    coco = read_coco(src.labels, src.images, cfg.names, report) if src.format == "coco" else {}
    jobs = [(p, src.format, _label_file(src, p), cfg.names, coco.get(p)) for p in src.images]
    samples = []
    # disable=None: bars only on a terminal, so logs and error output stay clean
    bar = dict(total=len(jobs), desc=f"scan {split}", disable=None if progress else True, leave=False, unit="img")
    if workers > 1 and len(jobs) >= _PROCESS_POOL_MIN:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_scan_one, jobs, chunksize=512), **bar))
    else:
        results = [_scan_one(j) for j in tqdm(jobs, **bar)]
    for sample, issues in results:
        report.issues += issues
        if sample is not None:
            samples.append(sample)
    if use_cache:
        _write_cache(cache, samples, report)
    return samples, report


def _write_cache(path: Path, samples: list[Sample], report: LabelReport) -> None:
    """Flat arrays in an .npz (read back with allow_pickle=False: data only, nothing executable)."""
    issues = json.dumps([[i.kind, i.file, i.line, i.detail] for i in report.issues])
    try:
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            tmp,
            version=np.array(CACHE_VERSION),
            paths=np.array([str(s.path) for s in samples], dtype=str),
            hw=np.array([[s.height, s.width] for s in samples], dtype=np.int64).reshape(-1, 2),
            counts=np.array([len(s.classes) for s in samples], dtype=np.int64),
            classes=np.concatenate([s.classes for s in samples]) if samples else np.zeros(0, np.int64),
            boxes=np.concatenate([s.boxes for s in samples]) if samples else np.zeros((0, 4), np.float32),
            ignore_counts=np.array([len(s.ignore) for s in samples], dtype=np.int64),
            ignore=np.concatenate([s.ignore for s in samples]) if samples else np.zeros((0, 4), np.float32),
            issues=np.array(issues),
        )
        os.replace(tmp, path)
    except OSError as e:  # a read-only home must not stop the run
        Path(tmp).unlink(missing_ok=True)
        print(f"note: label cache not written to {path} ({e.strerror or e})", file=sys.stderr)


def _read_cache(path: Path):
    with np.load(path, allow_pickle=False) as z:
        if int(z["version"]) != CACHE_VERSION:
            raise ValueError("cache version")
        ends = np.cumsum(z["counts"])
        classes, boxes = np.split(z["classes"], ends[:-1]), np.split(z["boxes"], ends[:-1])
        ignore = np.split(z["ignore"], np.cumsum(z["ignore_counts"])[:-1])
        samples = [Sample(Path(p), int(h), int(w), c, b, r)
                   for p, (h, w), c, b, r in zip(z["paths"], z["hw"], classes, boxes, ignore)]
        issues = [Issue(*i) for i in json.loads(str(z["issues"]))]
    return samples, LabelReport(issues)
