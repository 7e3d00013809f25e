"""Build a TensorRT engine (FP16, or INT8 from the QDQ model) from deploy.export's ONNX files.

    python -m deploy.trt --onnx DIR/model.onnx [--int8] [--nms-layer] --out DIR/model.engine \\
        [--workspace GB] [--timing-cache FILE]

FP16: TensorRT 8.6-10.x sets the FP16 builder flag on the FP32 graph; TensorRT 11 removed that
flag (strong typing only), so the engine is built from the graph's FP16 twin, ``<stem>_fp16.onnx``
(``model_fp16.onnx``, ``model_nms_fp16.onnx``, ``model_trt_nms_fp16.onnx``), which deploy.export
writes beside it. INT8 (``--int8``): explicit quantisation from ``model_int8_trt.onnx`` (symmetric
INT8 Q/DQ, the form TensorRT requires), the path TensorRT 10 and 11 recommend over calibrators;
before 11 the INT8 and FP16 flags let the unquantised layers run in FP16; on 11 (strongly typed)
they run in the graph's own type, FP32 (the stem, head and decode kept in float: the decode has to
be, the other two would be faster in an FP16 twin of the QDQ graph, not written). ``--nms-layer`` adds
TensorRT's own NMS layer (``INetworkDefinition.add_nms``, the successor of the EfficientNMS_TRT
plugin deprecated in 10.12) after the raw output. Writes the engine, ``<engine>.json``
(metadata, which the runtime needs) and ``<engine>.log`` (the build log, also on failure).
Without CUDA or TensorRT it exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from deploy.export import fp16_twin
from detect import cli
from detect.errors import UsageError
from detect.infer.metadata import read_metadata


def missing_requirements() -> list[str]:
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("the TensorRT Python package (pip install -r requirements-trt.txt)")
    return missing


def build_source(onnx_path: Path, major: int, int8: bool) -> tuple[Path, str]:
    """The graph TensorRT ``major`` builds from, and the engine's precision."""
    if int8:
        source = onnx_path.with_name("model_int8_trt.onnx") if "int8" not in onnx_path.stem else onnx_path
        if not source.is_file():
            raise UsageError(f"--int8 builds from {source}: write it with python -m deploy.export --int8 --calib-data D")
        return source, "int8"
    if major >= 11:  # strong typing: precision comes from the graph
        source = fp16_twin(onnx_path)
        if not source.is_file():
            raise UsageError(
                f"TensorRT {major} builds FP16 only from an FP16 graph: {source} not found "
                "(python -m deploy.export writes it)"
            )
        return source, "fp16"
    return onnx_path, "fp16"


def make_logger(trt):
    class BuildLog(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg):
            self.lines.append(f"[{severity.name}] {msg}")
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                print(f"TensorRT: {msg}", file=sys.stderr)

    return BuildLog()


def parse_network(trt, builder, logger, source: Path, major: int):
    """The network of ``source``, plugins registered first (graphs with EfficientNMS_TRT need them)."""
    trt.init_libnvinfer_plugins(logger, "")
    if major >= 11:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    elif major >= 10:
        flags = 0  # explicit batch is the only mode
    else:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(source.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UsageError(f"{source}: TensorRT's ONNX parser failed: {errors}")
    return network


def add_nms_layer(trt, network, meta: dict, conf: float, iou: float, max_det: int) -> None:
    """Replace the raw output by TensorRT's NMS layer: outputs ``boxes`` (b, N, 4 cx cy w h),
    ``scores`` (b, N, nc), ``selected_indices`` (k, 3: batch, class, box) and ``num_detections``."""
    if not hasattr(network, "add_nms"):
        raise UsageError(f"--nms-layer: TensorRT {trt.__version__} has no NMS layer (8.5+); use model_trt_nms.onnx")
    out = network.get_output(0)
    b, n, c = (int(d) for d in out.shape)
    if b < 0:
        raise UsageError("--nms-layer needs a fixed-batch export (deploy.export --batch N)")
    boxes = network.add_slice(out, (0, 0, 0), (b, n, 4), (1, 1, 1)).get_output(0)
    obj = network.add_slice(out, (0, 0, 4), (b, n, 1), (1, 1, 1)).get_output(0)
    cls = network.add_slice(out, (0, 0, 5), (b, n, c - 5), (1, 1, 1)).get_output(0)
    scores = network.add_elementwise(cls, obj, trt.ElementWiseOperation.PROD).get_output(0)

    def scalar(value, dtype):
        return network.add_constant((), trt.Weights(np.array(value, dtype=dtype))).get_output(0)

    layer = network.add_nms(boxes, scores, scalar(max_det, np.int32))
    layer.bounding_box_format = trt.BoundingBoxFormat.CENTER_SIZES
    layer.set_input(3, scalar(iou, np.float32))
    layer.set_input(4, scalar(conf, np.float32))
    network.unmark_output(out)
    for tensor, name in ((boxes, "boxes"), (scores, "scores"), (layer.get_output(0), "selected_indices"),
                         (layer.get_output(1), "num_detections")):
        tensor.name = name
        network.mark_output(tensor)


def apply_timing_cache(config, path: Path | None) -> None:
    """Reuse ``path``'s timing cache; one from another GPU or TensorRT version is refused by TensorRT
    (``set_timing_cache`` returns False), so a fresh one is used and the file replaced after the build."""
    data = path.read_bytes() if path and path.is_file() else b""
    if not config.set_timing_cache(config.create_timing_cache(data), False):
        print(f"warning: timing cache {path} is from another GPU or TensorRT version; starting a fresh one",
              file=sys.stderr)
        if not config.set_timing_cache(config.create_timing_cache(b""), False):
            raise UsageError("TensorRT refused an empty timing cache; build without --timing-cache")


def build(onnx_path: Path, out: Path, workspace_gb: float = 4.0, timing_cache: Path | None = None,
          int8: bool = False, nms_layer: dict | None = None) -> dict:
    import tensorrt as trt  # lazy: GPU hosts only (requirements-trt.txt)

    major = int(trt.__version__.split(".")[0])
    meta = read_metadata(onnx_path)
    source, precision = build_source(onnx_path, major, int8)
    logger = make_logger(trt)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        builder = trt.Builder(logger)
        network = parse_network(trt, builder, logger, source, major)
        if nms_layer is not None:
            add_nms_layer(trt, network, meta, **nms_layer)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
        if major < 11:
            config.set_flag(trt.BuilderFlag.FP16)
            if int8:
                config.set_flag(trt.BuilderFlag.INT8)  # weakly typed: Q/DQ layers run in INT8
        shapes = profile_shapes(meta)
        profile = builder.create_optimization_profile()
        profile.set_shape(network.get_input(0).name, *shapes)
        config.add_optimization_profile(profile)
        apply_timing_cache(config, timing_cache)
        t = time.perf_counter()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise UsageError(f"TensorRT failed to build {out}; see {out.with_suffix('.log')}")
        seconds = time.perf_counter() - t
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(bytes(serialized))
        os.replace(tmp, out)
        if timing_cache:
            timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    finally:
        out.with_suffix(".log").write_text("\n".join(logger.lines) + "\n")
    engine_meta = {
        **{k: meta[k] for k in ("names", "stride", "input_shape", "max_batch", "letterbox")},
        "precision": precision, "tensorrt": trt.__version__, "gpu": torch.cuda.get_device_name(0),
        "onnx": str(source), "profile": [list(s) for s in shapes], "build_seconds": seconds,
        "strongly_typed": major >= 11, **({"nms": nms_layer} if nms_layer else {}),
    }
    out.with_suffix(".json").write_text(json.dumps(engine_meta, indent=2))
    return engine_meta


def profile_shapes(meta: dict) -> tuple:
    batch, _, h, w = meta["input_shape"]
    max_batch = int(meta.get("max_batch", 1))
    if batch == -1:
        return (1, 3, h, w), (max(1, max_batch // 2), 3, h, w), (max_batch, 3, h, w)
    return ((batch, 3, h, w),) * 3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deploy.trt",
        description=__doc__.split("\n\n")[0],
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--onnx", type=Path, required=True, help="model.onnx written by deploy.export")
    p.add_argument("--out", type=Path, default=None, help="engine path (default: beside the ONNX, model[_int8].engine)")
    p.add_argument("--int8", action="store_true", help="INT8 engine from model_int8_trt.onnx (deploy.export --int8)")
    p.add_argument("--nms-layer", action="store_true", help="append TensorRT's NMS layer (fixed-batch exports)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold of --nms-layer")
    p.add_argument("--iou", type=float, default=0.45, help="IoU threshold of --nms-layer")
    p.add_argument("--max-det", type=int, default=300, help="boxes per class kept by --nms-layer")
    p.add_argument("--workspace", type=float, default=4.0, help="builder workspace, GiB")
    p.add_argument("--timing-cache", type=Path, default=None, help="reuse and update this timing cache")
    p.add_argument(
        "--if-available",
        action="store_true",
        help="where CUDA or TensorRT is missing, say so in one line and exit 0 (make trt on CPU hosts)",
    )
    args = p.parse_args(argv)
    if not args.onnx.is_file():
        raise UsageError(f"{args.onnx}: no such ONNX file (python -m deploy.export writes one)")
    name = "model" + ("_int8" if args.int8 else "") + ("_nms" if args.nms_layer else "") + ".engine"
    out = args.out or args.onnx.with_name(name)
    missing = missing_requirements()
    if missing:
        ready = ", ".join(str(q) for q in sorted(args.onnx.parent.glob("*.onnx")))
        if args.if_available:
            print(f"trt: engine skipped, missing {' and '.join(missing)}; ONNX files ready: {ready}")
            return 0
        raise UsageError(
            f"cannot build a TensorRT engine here: missing {' and '.join(missing)}; "
            f"the ONNX files are ready for a GPU host: {ready}"
        )
    nms = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det} if args.nms_layer else None
    meta = build(args.onnx, out, args.workspace, args.timing_cache, args.int8, nms)
    print(f"wrote {out} ({meta['precision']}, TensorRT {meta['tensorrt']}, {meta['gpu']}, {meta['build_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    cli.run(main)
