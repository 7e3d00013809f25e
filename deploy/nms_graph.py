"""Detection post-processing appended to an exported graph, so a runtime returns final boxes.

- ``add_onnx_nms``: the standard ``NonMaxSuppression`` op (ONNX Runtime and others). Output
  ``detections`` (K, 7): batch index, x1, y1, x2, y2, score, class — class-aware NMS on
  score = objectness x class probability, like ``detect.boxes.non_max_suppression`` with
  ``multi_label=True``. ``max_det`` is per class and image (the op's own limit).
- ``add_efficient_nms``: TensorRT's ``EfficientNMS_TRT`` plugin: outputs num_dets (B, 1),
  det_boxes (B, max_det, 4) xyxy, det_scores (B, max_det), det_classes (B, max_det).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _split_output(graph, nc: int | None):
    """Nodes giving boxes (B, N, 4) cx,cy,w,h and scores (B, N, nc) from YOLOv5's output0."""
    out = graph.output[0].name
    consts = {
        "nms_s0": np.array([0], np.int64),
        "nms_s4": np.array([4], np.int64),
        "nms_s5": np.array([5], np.int64),
        "nms_end": np.array([2**62], np.int64),
        "nms_ax2": np.array([2], np.int64),
    }
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    graph.node.extend(
        [
            helper.make_node("Slice", [out, "nms_s0", "nms_s4", "nms_ax2"], ["nms_boxes"]),
            helper.make_node("Slice", [out, "nms_s4", "nms_s5", "nms_ax2"], ["nms_obj"]),
            helper.make_node("Slice", [out, "nms_s5", "nms_end", "nms_ax2"], ["nms_cls"]),
            helper.make_node("Mul", ["nms_cls", "nms_obj"], ["nms_scores"]),
        ]
    )
    return "nms_boxes", "nms_scores"


def add_onnx_nms(src: Path, dst: Path, nc: int, conf: float, iou: float, max_det: int) -> None:
    model = onnx.load(str(src))
    g = model.graph
    boxes, scores = _split_output(g, nc)
    consts = {
        "nms_max": np.array([max_det], np.int64),
        "nms_iou": np.array([iou], np.float32),
        "nms_conf": np.array([conf], np.float32),
        "nms_i0": np.array(0, np.int64),
        "nms_i1": np.array(1, np.int64),
        "nms_i2": np.array(2, np.int64),
        "nms_ax1": np.array([1], np.int64),
        "nms_c0": np.array([0], np.int64),
        "nms_c2": np.array([2], np.int64),
        "nms_c4": np.array([4], np.int64),
        "nms_half": np.array(0.5, np.float32),
    }
    g.initializer.extend(numpy_helper.from_array(v, k) for k, v in consts.items())
    n = helper.make_node
    g.node.extend(
        [
            n("Transpose", [scores], ["nms_scores_t"], perm=[0, 2, 1]),  # (B, nc, N)
            n(
                "NonMaxSuppression",
                [boxes, "nms_scores_t", "nms_max", "nms_iou", "nms_conf"],
                ["nms_sel"],
                center_point_box=1,
            ),  # (K, 3): batch, class, box
            n("Gather", ["nms_sel", "nms_i0"], ["nms_b"], axis=1),
            n("Gather", ["nms_sel", "nms_i1"], ["nms_c"], axis=1),
            n("Gather", ["nms_sel", "nms_i2"], ["nms_n"], axis=1),
            n("Unsqueeze", ["nms_b", "nms_ax1"], ["nms_b1"]),
            n("Unsqueeze", ["nms_n", "nms_ax1"], ["nms_n1"]),
            n("Concat", ["nms_b1", "nms_n1"], ["nms_bn"], axis=1),
            n("GatherND", [boxes, "nms_bn"], ["nms_sel_boxes"]),  # (K, 4) cx, cy, w, h
            n("GatherND", ["nms_scores_t", "nms_sel"], ["nms_sel_scores"]),  # (K,)
            n("Slice", ["nms_sel_boxes", "nms_c0", "nms_c2", "nms_ax1"], ["nms_xy"]),
            n("Slice", ["nms_sel_boxes", "nms_c2", "nms_c4", "nms_ax1"], ["nms_wh"]),
            n("Mul", ["nms_wh", "nms_half"], ["nms_hwh"]),
            n("Sub", ["nms_xy", "nms_hwh"], ["nms_x1y1"]),
            n("Add", ["nms_xy", "nms_hwh"], ["nms_x2y2"]),
            n("Cast", ["nms_b1"], ["nms_bf"], to=TensorProto.FLOAT),
            n("Unsqueeze", ["nms_c", "nms_ax1"], ["nms_c1"]),
            n("Cast", ["nms_c1"], ["nms_cf"], to=TensorProto.FLOAT),
            n("Unsqueeze", ["nms_sel_scores", "nms_ax1"], ["nms_s1"]),
            n("Concat", ["nms_bf", "nms_x1y1", "nms_x2y2", "nms_s1", "nms_cf"], ["detections"], axis=1),
        ]
    )
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["num_detections", 7]))
    _mark(model, "nms", "onnx")
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def add_efficient_nms(src: Path, dst: Path, conf: float, iou: float, max_det: int) -> None:
    model = onnx.load(str(src))
    g = model.graph
    boxes, scores = _split_output(g, None)
    batch = g.input[0].type.tensor_type.shape.dim[0]
    b = batch.dim_param or batch.dim_value
    g.node.append(
        helper.make_node(
            "EfficientNMS_TRT",
            [boxes, scores],
            ["num_dets", "det_boxes", "det_scores", "det_classes"],
            plugin_version="1",
            background_class=-1,
            max_output_boxes=max_det,
            score_threshold=conf,
            iou_threshold=iou,
            score_activation=0,
            box_coding=1,
        )
    )
    del g.output[:]
    g.output.extend(
        [
            helper.make_tensor_value_info("num_dets", TensorProto.INT32, [b, 1]),
            helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [b, max_det, 4]),
            helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [b, max_det]),
            helper.make_tensor_value_info("det_classes", TensorProto.INT32, [b, max_det]),
        ]
    )
    _mark(model, "nms", "efficient_nms_trt")
    onnx.save(model, str(dst))


def _mark(model, key: str, value: str) -> None:
    for p in model.metadata_props:
        if p.key == key:
            p.value = f'"{value}"'
            return
    entry = model.metadata_props.add()
    entry.key, entry.value = key, f'"{value}"'
