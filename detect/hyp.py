"""Hyperparameters: ``configs/hyp/default.yaml`` overlaid with a user file; unknown keys are an error."""

from __future__ import annotations

from pathlib import Path

import yaml

from detect.errors import UsageError

DEFAULT = Path(__file__).resolve().parents[1] / "configs" / "hyp" / "default.yaml"


def load_hyp(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    hyp = yaml.safe_load(DEFAULT.read_text())
    if path is not None and Path(path).resolve() != DEFAULT:
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"{path}: no such hyperparameter file")
        user = yaml.safe_load(path.read_text()) or {}
        if not isinstance(user, dict):
            raise UsageError(f"{path}: expected a mapping of hyperparameter: value")
        _check_keys(user, hyp, str(path))
        hyp.update(user)
    if overrides:
        _check_keys(overrides, hyp, "overrides")
        hyp.update(overrides)
    if hyp["optimizer"] not in ("SGD", "AdamW"):
        raise UsageError(f"optimizer must be SGD or AdamW, got {hyp['optimizer']!r}")
    if hyp["schedule"] not in ("cosine", "linear"):
        raise UsageError(f"schedule must be cosine or linear, got {hyp['schedule']!r}")
    if hyp["sparsity_schedule"] not in ("constant", "linear"):
        raise UsageError(f"sparsity_schedule must be constant or linear, got {hyp['sparsity_schedule']!r}")
    return hyp


def _check_keys(user: dict, known: dict, where: str) -> None:
    unknown = sorted(set(user) - set(known))
    if unknown:
        raise UsageError(f"{where}: unknown hyperparameter(s) {', '.join(unknown)}; every key is listed in {DEFAULT}")
