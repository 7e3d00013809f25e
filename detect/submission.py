"""Competition submission files from ``detect.predict``'s detections, by suffix.

- ``.csv``: a header line ``image,class,score,x1,y1,x2,y2`` and one row per box: the image's
  path relative to ``--source``, the class index, the score, the corners in original pixels.
- ``.json``: COCO results ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``. With a
  COCO annotations file, image ids are looked up by file name (relative path, else base name)
  and category ids by class name (else by position in the sorted category ids); without
  one, the image id is the file's stem as an integer where it is one (``000000000139.jpg`` ->
  139) and the relative path otherwise, and category ids are class indices.

The boxes are exactly ``--json``'s; ``read_submission`` reads either format back.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from detect.errors import DataError, UsageError
from detect.outputs import atomic_write_text

SUFFIXES = (".csv", ".json")
CSV_HEADER = ["image", "class", "score", "x1", "y1", "x2", "y2"]


def check_submission_path(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--submission {path}: the suffix names the format: use .csv or .json")


def write_submission(path: Path, detections: list[dict], names: list[str], coco_annotations: Path | None = None) -> None:
    """``detections``: ``--json`` records (file_name, category_id, bbox xywh, score)."""
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for d in detections:
            x, y, w, h = d["bbox"]
            writer.writerow([d["file_name"], d["category_id"], f"{d['score']:.6g}", *(f"{v:.3f}" for v in (x, y, x + w, y + h))])
        atomic_write_text(buf.getvalue(), path)
        return
    image_id, category_id = _coco_ids(detections, names, coco_annotations)
    results = [
        {"image_id": image_id(d["file_name"]), "category_id": category_id(d["category_id"]),
         "bbox": [round(v, 3) for v in d["bbox"]], "score": round(d["score"], 6)}
        for d in detections
    ]
    atomic_write_text(json.dumps(results), path)


def _coco_ids(detections, names, annotations: Path | None):
    if annotations is None:
        return (lambda f: int(Path(f).stem) if Path(f).stem.isdigit() else f), (lambda c: c)
    try:
        data = json.loads(Path(annotations).read_text())
        images, categories = data["images"], data["categories"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{annotations}: not a COCO annotations file with 'images' and 'categories' ({e})") from None
    by_path = {im["file_name"]: im["id"] for im in images}
    by_base = {Path(im["file_name"]).name: im["id"] for im in images}
    by_name = {c["name"]: c["id"] for c in categories}
    ordered = sorted(c["id"] for c in categories)
    files = {d["file_name"] for d in detections}
    missing = sorted(f for f in files if f not in by_path and Path(f).name not in by_base)
    if missing:
        raise DataError(f"{annotations}: {len(missing)} predicted images are not listed in it, e.g. {missing[0]}")
    if all(n in by_name for n in names):
        cat = [by_name[n] for n in names]
    elif len(ordered) >= len(names):
        cat = ordered[: len(names)]
    else:
        raise DataError(f"{annotations}: {len(categories)} categories for a {len(names)}-class model")
    return (lambda f: by_path.get(f, by_base.get(Path(f).name))), (lambda c: cat[c])


def read_submission(path: Path) -> list[dict]:
    """A submission file back as records with ``image``, ``category_id``, ``score``, ``xyxy``."""
    text = Path(path).read_text()
    if Path(path).suffix.lower() == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows or rows[0] != CSV_HEADER:
            raise DataError(f"{path}: expected the header {','.join(CSV_HEADER)}")
        return [{"image": r[0], "category_id": int(r[1]), "score": float(r[2]), "xyxy": [float(v) for v in r[3:7]]}
                for r in rows[1:]]
    out = []
    for d in json.loads(text):
        x, y, w, h = d["bbox"]
        out.append({"image": d["image_id"], "category_id": d["category_id"], "score": d["score"], "xyxy": [x, y, x + w, y + h]})
    return out
