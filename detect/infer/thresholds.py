"""One confidence threshold per class, for competitions scored by F1 rather than mAP.

``thresholds.json`` (written by ``detect.val --report`` beside report.json, each class's best-F1
confidence on the validation split; or by the k-fold's out-of-fold predictions):

    {"default": 0.31, "classes": {"person": 0.42, "top": 0.27, ...}, "source": "..."}

Classes are matched by name; a class the file does not list (or lists as null) uses ``default``.
``detect.predict --conf-per-class FILE`` runs with the lowest of them and keeps each box whose score
reaches its class's threshold.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from detect.errors import UsageError
from detect.outputs import atomic_write_text


def write_thresholds(path: Path, names: list[str], best: list[float | None], default: float, source: str) -> Path:
    classes = {n: (None if c is None else round(float(c), 4)) for n, c in zip(names, best)}
    text = json.dumps({"default": round(float(default), 4), "classes": classes, "source": source}, indent=1)
    return atomic_write_text(text, path)


def lowest_threshold(path: Path) -> float:
    """The lowest threshold the file sets: what the predictor must keep before the per-class filter."""
    raw = _read(path)
    return min([raw.get("default", 0.25), *[v for v in raw["classes"].values() if isinstance(v, int | float)]])


def load_thresholds(path: Path, names: list[str]) -> torch.Tensor:
    """Per-class thresholds for the model's ``names`` (index = class id), from a thresholds.json."""
    raw = _read(path)
    default = raw.get("default", 0.25)
    lower = {str(k).lower(): v for k, v in raw["classes"].items()}
    unknown = sorted(set(lower) - {n.lower() for n in names})
    if unknown:
        raise UsageError(f"--conf-per-class {path}: class(es) {', '.join(unknown)} are not the model's "
                         f"({', '.join(names)})")
    values = [lower.get(n.lower()) for n in names]
    return torch.tensor([default if v is None else v for v in values], dtype=torch.float32)


def _read(path: Path) -> dict:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--conf-per-class {path}: no such file (detect.val --report DIR writes DIR/thresholds.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"--conf-per-class {path}: not a JSON file ({e})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("classes"), dict):
        raise UsageError(f'--conf-per-class {path}: expected {{"default": c, "classes": {{name: c, ...}}}}')
    for name, v in [("default", raw.get("default", 0.25)), *raw["classes"].items()]:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1):
            raise UsageError(f"--conf-per-class {path}: {name}: a threshold in [0, 1], got {v!r}")
    return raw


def keep_above(det: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Rows of ``det`` (x1, y1, x2, y2, score, class) whose score reaches their class's threshold."""
    if not len(det):
        return det
    return det[det[:, 4] >= thresholds.to(det.device)[det[:, 5].long()]]
