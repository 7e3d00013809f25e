"""What an inference run does beyond the model: thresholds, TTA, slicing, merging, fusing.

One frozen record, passed whole to the predictor, the slicer and the mergers, so each default is written
once, here (the CLIs' flags build it: ``detect.infer.options``).
"""

from __future__ import annotations

from dataclasses import dataclass

FUSE_CONF_TYPES = ("max", "avg", "box_and_model_avg", "absent_model_aware_avg")


@dataclass(frozen=True)
class InferenceConfig:
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 1000
    classes: tuple[int, ...] | None = None
    agnostic: bool = False
    multi_label: bool = False  # every class above conf per box (mAP), else the best one
    augment: bool = False
    slice_hw: tuple[int, int] | None = None
    slice_overlap: float = 0.2
    full: bool = True  # keep the full-image pass when slicing
    slice_merge: str = "nmm"  # nmm (intersection over smaller) | nms
    slice_match: float = 0.5
    slice_grow: float = 0.9  # NMM grows a box only with partners scoring >= this share of its score (merge.py)
    interpolation: str = "linear"  # official detect.py's letterbox; val keeps "area" as val.py
    fuse: str = "wbf"  # wbf | nms
    fuse_iou: float = 0.55
    fuse_skip: float = 0.0
    fuse_conf: str = "max"  # WBF's conf_type
    slice_batch: int = 8
