"""Hyperparameters: ``configs/hyp/default.yaml`` overlaid with a user file and ``--set`` pairs, as a frozen
``Hyp`` record (``hyp.lr0``; ``hyp.replace(lr0=0.001)`` for a changed copy, checked like a file).

The defaults file is the schema: every key it lists is the only key accepted, and its value's
type is the type accepted (an int where a float is expected is fine; a list keeps its length).
Choices for the few enumerated keys are listed in ``CHOICES``. ``overlay_saved`` rebuilds a
resumed run's hyperparameters on today's defaults, so a key added since still has a value.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import yaml

from detect.errors import UsageError

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "hyp" / "default.yaml"
CHOICES = {
    "optimizer": ("SGD", "AdamW"),
    "schedule": ("cosine", "linear"),
    "sparsity_schedule": ("constant", "linear"),
    "sparsity_mode": ("channel", "group"),
}


# A hyperparameter file may carry the run options it was written for (python -m analysis's recommended.yaml):
# detect.train applies them where the command line does not set them; every other reader skips the section.
TRAIN_SECTION = "train"
TRAIN_OPTIONS = {"img": int, "val_img": int, "anchors": str}


def defaults() -> dict:
    return yaml.safe_load(DEFAULT.read_text())


def _record(schema: dict) -> type:
    """A frozen dataclass with one typed field per key of the defaults file, in its order, YOLOv5's names kept."""
    fields = [(k, type(v), dataclasses.field(default_factory=lambda v=v: list(v)) if isinstance(v, list)
               else dataclasses.field(default=v)) for k, v in schema.items()]
    return dataclasses.make_dataclass("Hyp", fields, frozen=True, namespace={
        "__module__": __name__,  # picklable as detect.hyp.Hyp (data-loading workers, checkpoints never hold it)
        "__doc__": "The hyperparameters of a run: configs/hyp/default.yaml's keys as typed, read-only fields.",
        "as_dict": lambda self: dataclasses.asdict(self),
        "replace": lambda self, **changes: dataclasses.replace(self, **validate(changes, self.as_dict(), "replace")),
    })


Hyp = _record(defaults())


def load_hyp(path: str | Path | None = None, overrides: dict | None = None) -> Hyp:
    """Defaults, then the file at ``path``, then ``overrides``; each value checked against its default's type."""
    hyp = defaults()
    if path is not None and Path(path).resolve() != DEFAULT:
        user = _read(Path(path))
        user.pop(TRAIN_SECTION, None)
        hyp.update(validate(user, hyp, str(path)))
    if overrides:
        hyp.update(validate(overrides, hyp, "--set"))
    return Hyp(**hyp)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise UsageError(f"{path}: no such hyperparameter file")
    try:
        user = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a readable YAML file ({type(e).__name__})") from None
    if not isinstance(user, dict):
        raise UsageError(f"{path}: expected a mapping of hyperparameter: value")
    return user


def train_options(path: str | Path | None) -> dict:
    """The file's ``train:`` section (img, val_img, anchors), checked; anchors resolved beside the file."""
    if path is None or Path(path).resolve() == DEFAULT:
        return {}
    section = _read(Path(path)).get(TRAIN_SECTION) or {}
    where = f"{path}: {TRAIN_SECTION}:"
    if not isinstance(section, dict):
        raise UsageError(f"{where} expected a mapping of option: value")
    unknown = sorted(set(section) - set(TRAIN_OPTIONS))
    if unknown:
        raise UsageError(f"{where} unknown option(s) {', '.join(unknown)}; accepted: {', '.join(TRAIN_OPTIONS)}")
    out = {}
    for key, value in section.items():
        kind = TRAIN_OPTIONS[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise UsageError(f"{where} {key} must be {'a whole number' if kind is int else 'a path'}, got {value!r}")
        out[key] = str(Path(path).parent / value) if key == "anchors" else value
    return out


def validate(user: dict, schema: dict, where: str) -> dict:
    """``user`` with each value coerced to its schema type; unknown keys and wrong types are a UsageError."""
    unknown = sorted(set(user) - set(schema))
    if unknown:
        raise UsageError(f"{where}: unknown hyperparameter(s) {', '.join(unknown)}; every key is listed in {DEFAULT}")
    return {k: _coerce(k, v, schema[k], where) for k, v in user.items()}


def _coerce(key: str, value: Any, default: Any, where: str) -> Any:
    def bad(expected: str):
        return UsageError(f"{where}: {key} must be {expected}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
    elif isinstance(default, int | float):
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 and 1e9, without a dot, as strings
            try:
                value = float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        value = type(default)(value) if isinstance(default, float) or float(value).is_integer() else value
        if isinstance(default, int) and not isinstance(value, int):
            raise bad("a whole number")
    elif isinstance(default, list):
        if not isinstance(value, list) or len(value) != len(default):
            raise bad(f"a list of {len(default)} numbers")
        value = [_coerce(key, v, d, where) for v, d in zip(value, default)]
    elif isinstance(default, str) and not isinstance(value, str):
        raise bad("a string")
    if key in CHOICES and value not in CHOICES[key]:
        raise bad(" or ".join(CHOICES[key]))
    return value


def overlay_saved(saved: dict, where: str) -> Hyp:
    """A resumed run's hyperparameters on today's defaults; keys added since are announced with their value."""
    hyp = defaults()
    known = {k: v for k, v in saved.items() if k in hyp}
    dropped = sorted(set(saved) - set(hyp))
    hyp.update(validate(known, hyp, where))
    for key in sorted(set(hyp) - set(saved)):
        print(f"note: {where} predates hyperparameter {key}; using its default {hyp[key]!r}", file=sys.stderr)
    if dropped:
        print(f"note: {where}: hyperparameter(s) {', '.join(dropped)} no longer exist; ignored", file=sys.stderr)
    return Hyp(**hyp)
