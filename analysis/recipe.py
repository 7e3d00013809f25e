"""From advice to a training recipe: ``recommended.yaml``, which ``detect.train --hyp`` loads as it is.

Each recommendation that is a training setting, and that did not lose where it was measured, becomes a
hyperparameter line (or, for the run's
options, a line of the ``train:`` section that ``detect.hyp`` sets aside for ``detect.train``), with the
figure that triggered it as the line's comment. Advice for inference (NMS IoU, rectangular
validation, per-scene checks) is listed as comments only: it is not the trainer's.
"""

from __future__ import annotations

import math

from detect.hyp import TRAIN_SECTION


def recipe(recs: list[dict], img: int, long_side: int) -> tuple[list[tuple], list[tuple], list[str]]:
    """(hyperparameter lines, train-option lines, comment-only advice); a line is (key, value, why)."""
    hyp, train, notes = [], [("img", img, "the size the analysis measured at")], []
    for r in recs:
        setting, value, why = r["setting"], r["value"], r["because"]
        if setting == "sliced_training" and value:
            window = value["window"]
            hyp += [("slice", True, why), ("slice_window", window, f"{window / img:g}x the network size"),
                    ("slice_min_visible", value["min_visible"], "keep a box cut by the window if this share shows")]
            val_img = math.ceil(long_side * img / window / 32) * 32
            train.append(("val_img", val_img, f"whole {long_side}-px images at the windows' scale"))
        elif setting == "class_balanced_sampling" and value:
            hyp.append(("class_balanced", True, why))
        elif setting == "focal_loss" and value:
            notes.append(f"focal_loss: not applied ({why}; measured, fl_gamma 1.5 halved mAP50-95 on the synthetic "
                         "set, 0.0205 -> 0.0104, and the recipe with it fell from 0.23 to 0.10: docs/BENCHMARKS.md)")
        elif setting == "mosaic" and value["probability"] < 1:
            hyp.append(("mosaic", value["probability"], why))  # close_mosaic's default (10) is the advice's
        elif setting == "anchors" and value == "anchors.yaml":
            train.append(("anchors", "anchors.yaml", why))
        elif setting not in ("sliced_training", "class_balanced_sampling", "focal_loss", "mosaic", "anchors"):
            notes.append(f"{setting}: {value} ({why})")
    return hyp, train, notes


def _line(key: str, value, why: str, indent: str = "") -> str:
    text = "true" if value is True else "false" if value is False else str(value)
    return f"{indent}{key}: {text}" + (f"  # {why}" if why else "")


def recipe_yaml(recs: list[dict], img: int, long_side: int, data: str) -> str:
    """The text of recommended.yaml."""
    hyp, train, notes = recipe(recs, img, long_side)
    lines = [
        f"# Training recipe that python -m analysis recommends for {data} at img {img}.",
        "# Use it as it is: python -m detect.train --data D --hyp recommended.yaml (or make train RECIPE=this file);",
        "# options given on the command line win over the train: section. Delete a line to drop its advice.",
    ]
    lines += [_line(*h) for h in hyp] or ["# no hyperparameter differs from configs/hyp/default.yaml"]
    lines.append(f"{TRAIN_SECTION}:  # options of python -m detect.train (paths relative to this file)")
    lines += [_line(*t, indent="  ") for t in train]
    if notes:
        lines.append("# advice for validation and inference, not for the trainer:")
        lines += [f"#   {n}" for n in notes]
    return "\n".join(lines) + "\n"
