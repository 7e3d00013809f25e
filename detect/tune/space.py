"""The search space: a YAML file of hyperparameter (or run option) -> range, checked before any trial runs.

    lr0: {low: 1.0e-4, high: 0.1, log: true}     # float, log scale
    momentum: {low: 0.6, high: 0.98}             # float, linear
    close_mosaic: {low: 0, high: 15, type: int}  # int (step: S optional)
    optimizer: {choices: [SGD, AdamW]}           # categorical
    img: {choices: [320, 416, 512]}              # a run option (img, model, weights)
    weights: {choices: [best.pt, slim_0.6.pt]}   # starting weights: e.g. python -m prune's slimmed widths

Keys are configs/hyp/default.yaml's (the hyperparameter schema) plus ``img``, ``model`` and ``weights`` (a trial
that draws weights trains the architecture saved in them, unless it also draws ``model``). A value that
the schema would refuse (a string for a float, an unknown optimizer) is refused here, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from detect.errors import UsageError
from detect.hyp import defaults, validate

OPTIONS = ("img", "model", "weights")  # run options a study may search beside the hyperparameters
FORMS = {"low", "high", "log", "type", "step", "choices"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # float, int or categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial):
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} in [{self.low}, {self.high}]{' log' if self.log else ''}{' int' if self.kind == 'int' else ''}"


@dataclass(frozen=True)
class SearchSpace:
    params: tuple[Param, ...]
    source: str = "<space>"

    @classmethod
    def load(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"--space {path}: no such file (the shipped one is configs/tune/default.yaml)")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: not a readable YAML file ({type(e).__name__})") from None
        return cls.from_dict(raw, str(path))

    @classmethod
    def from_dict(cls, raw, where: str = "<space>") -> SearchSpace:
        if not isinstance(raw, dict) or not raw:
            raise UsageError(f"{where}: expected a mapping of key: {{low, high[, log, type, step]}} or {{choices}}")
        schema = defaults()
        return cls(tuple(_param(str(k), v, schema, where) for k, v in raw.items()), where)

    def suggest(self, trial) -> dict:
        """The trial's values, one per key, in the file's order."""
        return {p.name: p.suggest(trial) for p in self.params}

    @staticmethod
    def split(values: dict) -> tuple[dict, dict]:
        """(hyperparameter changes, run options) of a trial's values."""
        return ({k: v for k, v in values.items() if k not in OPTIONS}, {k: v for k, v in values.items() if k in OPTIONS})


def _param(key: str, spec, schema: dict, where: str) -> Param:
    def bad(why: str) -> UsageError:
        return UsageError(f"{where}: {key}: {why}")

    if key not in schema and key not in OPTIONS:
        raise bad(f"not a hyperparameter (configs/hyp/default.yaml) nor a run option ({', '.join(OPTIONS)})")
    if not isinstance(spec, dict) or not spec or set(spec) - FORMS:
        raise bad("expected {low: L, high: H[, log: true][, type: int][, step: S]} or {choices: [...]}, got "
                  f"{spec!r}")
    default = schema.get(key, 640 if key == "img" else "yolov5n")
    if "choices" in spec:
        return _categorical(key, spec, schema, where, bad)
    if isinstance(default, bool | str | list):
        raise bad(f"a {type(default).__name__} setting: give it as {{choices: [...]}}")
    if "low" not in spec or "high" not in spec:
        raise bad("a range needs both low and high")
    low, high, log, step = _number(spec["low"]), _number(spec["high"]), bool(spec.get("log", False)), spec.get("step")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high)):
        raise bad(f"low and high must be numbers, got {low!r} and {high!r}")
    if low > high:
        raise bad(f"low {low} is above high {high}")
    if log and low <= 0:
        raise bad(f"a log range needs a positive low bound, got {low}")
    if spec.get("type") not in (None, "int", "float"):
        raise bad(f"type must be int or float, got {spec['type']!r}")
    integer = isinstance(default, int) and not isinstance(default, float)
    if integer and spec.get("type") == "float":
        raise bad("an integer setting: drop type: float")
    kind = "int" if integer or spec.get("type") == "int" else "float"
    if key == "img":
        step = step or 32
        if step % 32 or low % 32 or high % 32:
            raise bad("img bounds and step must be multiples of 32 (the network's largest stride)")
    if log and step is not None:
        raise bad("log and step cannot be combined (Optuna samples a log range continuously)")
    return Param(key, kind, low, high, log, step)


def _number(value):
    """PyYAML (YAML 1.1) reads 1e-4, without a dot, as a string: take it as the number it means."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _categorical(key: str, spec: dict, schema: dict, where: str, bad) -> Param:
    choices = spec["choices"]
    if set(spec) != {"choices"} or not isinstance(choices, list) or not choices:
        raise bad("choices must be a non-empty list, given alone")
    if key == "img" and any(not isinstance(c, int) or c < 32 or c % 32 for c in choices):
        raise bad(f"img choices must be multiples of 32, got {choices}")
    if key == "model" and any(not isinstance(c, str) for c in choices):
        raise bad(f"model choices are names or paths, got {choices}")
    if key == "weights":
        if any(not isinstance(c, str) for c in choices):
            raise bad(f"weights choices are paths to checkpoints, got {choices}")
        missing = [c for c in choices if not Path(c).is_file()]
        if missing:
            raise bad(f"no such file: {missing[0]} (paths are relative to where the command runs)")
    if key in schema:
        for c in choices:  # each choice as the schema would take it (UsageError names the key)
            try:
                validate({key: c}, schema, where)
            except UsageError as e:
                raise bad(f"choice {c!r} refused: {e}") from None
    return Param(key, "categorical", choices=tuple(choices))
