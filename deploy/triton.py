"""A Triton Inference Server model repository for an exported detector."""

from __future__ import annotations

import shutil
from pathlib import Path


def write_repository(root: Path, model_file: Path, meta: dict, name: str = "detector") -> Path:
    """``root/name/config.pbtxt`` + ``root/name/1/model.onnx|model.plan``; dynamic batching when the
    graph has a dynamic batch dimension (Triton then sees dims without it)."""
    plan = model_file.suffix == ".engine"
    version = root / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_file, version / ("model.plan" if plan else "model.onnx"))
    batch, c, h, w = meta["input_shape"]
    dynamic = batch == -1
    max_batch = int(meta.get("max_batch", 1)) if dynamic else 0
    boxes = (h // 8) * (w // 8) * 3 + (h // 16) * (w // 16) * 3 + (h // 32) * (w // 32) * 3
    no = 5 + len(meta["names"])
    in_dims = [c, h, w] if dynamic else [batch, c, h, w]
    out_dims = [boxes, no] if dynamic else [batch, boxes, no]
    lines = [
        f'name: "{name}"',
        f'platform: "{"tensorrt_plan" if plan else "onnxruntime_onnx"}"',
        f"max_batch_size: {max_batch}",
        f'input [ {{ name: "images" data_type: TYPE_FP32 dims: {in_dims} }} ]',
        f'output [ {{ name: "output0" data_type: TYPE_FP32 dims: {out_dims} }} ]',
    ]
    if dynamic:
        lines.append(
            f"dynamic_batching {{ preferred_batch_size: [ {max(1, max_batch // 2)}, {max_batch} ] "
            "max_queue_delay_microseconds: 2000 }"
        )
    (root / name / "config.pbtxt").write_text("\n".join(lines) + "\n")
    (root / name / "labels.txt").write_text("\n".join(meta["names"]) + "\n")
    return root / name
