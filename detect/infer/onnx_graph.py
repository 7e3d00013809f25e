"""A detector traced to an ONNX graph: the one export step that deploy.export (which adds simplification, FP16,
NMS and metadata) and detect.tune's latency objective (which times the bare graph) share."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def export_onnx(
    model: torch.nn.Module, path: Path, shape: tuple[int, int], batch: int, dynamic_batch: bool, opset: int
) -> None:
    """``model`` (in eval mode) traced at ``batch`` x 3 x ``shape``; output ``output0``, YOLOv5's raw layout."""
    x = torch.zeros(batch, 3, *shape)
    axes = {"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer chatter about Python values in Detect's grid cache
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["images"],
            output_names=["output0"],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
