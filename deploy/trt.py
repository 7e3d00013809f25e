"""Build a TensorRT FP16 engine from deploy.export's ONNX files.

    python -m deploy.trt --onnx DIR/model.onnx --out DIR/model.engine [--workspace GB] [--timing-cache FILE]

TensorRT 8.6-10.x: FP16 through the builder flag on the FP32 graph. TensorRT 11 removed that
flag (strong typing only): the engine is built, strongly typed, from model_fp16.onnx (FP16
compute, FP32 inputs and outputs) found beside the given file. Writes the engine, <engine>.json
(metadata) and <engine>.log (the build log). Without CUDA or TensorRT it exits 2 with one line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from deploy.export import read_metadata
from detect import cli
from detect.errors import UsageError


def missing_requirements() -> list[str]:
    missing = []
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("the TensorRT Python package (pip install -r requirements-trt.txt)")
    return missing


def build(onnx_path: Path, out: Path, workspace_gb: float = 4.0, timing_cache: Path | None = None) -> dict:
    import tensorrt as trt

    major = int(trt.__version__.split(".")[0])
    meta = read_metadata(onnx_path)
    source = onnx_path
    if major >= 11:  # strong typing: precision comes from the graph
        source = onnx_path.with_name(onnx_path.stem.replace("_fp16", "") + "_fp16.onnx")
        if not source.is_file():
            raise UsageError(
                f"TensorRT {trt.__version__} builds FP16 only from an FP16 graph: {source} not found "
                "(python -m deploy.export writes it)"
            )

    class BuildLog(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg):
            self.lines.append(f"[{severity.name}] {msg}")
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                print(f"TensorRT: {msg}", file=sys.stderr)

    logger = BuildLog()
    builder = trt.Builder(logger)
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
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if major < 11:
        config.set_flag(trt.BuilderFlag.FP16)
    batch, _, h, w = meta["input_shape"]
    max_batch = int(meta.get("max_batch", 1))
    profile = builder.create_optimization_profile()
    if batch == -1:
        shapes = ((1, 3, h, w), (max(1, max_batch // 2), 3, h, w), (max_batch, 3, h, w))
    else:
        shapes = ((batch, 3, h, w),) * 3
    profile.set_shape(network.get_input(0).name, *shapes)
    config.add_optimization_profile(profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cache_bytes), False)
    t = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise UsageError(f"TensorRT failed to build {out}; see {out.with_suffix('.log')}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, out)
    if timing_cache:
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    engine_meta = {
        **{k: meta[k] for k in ("names", "stride", "input_shape", "max_batch", "letterbox")},
        "precision": "fp16",
        "tensorrt": trt.__version__,
        "gpu": torch.cuda.get_device_name(0),
        "onnx": str(source),
        "profile": [list(s) for s in shapes],
        "build_seconds": time.perf_counter() - t,
        "strongly_typed": major >= 11,
    }
    out.with_suffix(".json").write_text(json.dumps(engine_meta, indent=2))
    out.with_suffix(".log").write_text("\n".join(logger.lines) + "\n")
    return engine_meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m deploy.trt",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--onnx", type=Path, required=True, help="model.onnx written by deploy.export")
    p.add_argument("--out", type=Path, default=None, help="engine path (default: beside the ONNX, model.engine)")
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
    out = args.out or args.onnx.with_name("model.engine")
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
    meta = build(args.onnx, out, args.workspace, args.timing_cache)
    print(f"wrote {out} (TensorRT {meta['tensorrt']}, {meta['gpu']}, {meta['build_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    cli.run(main)
