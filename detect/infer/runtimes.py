"""ONNX Runtime and OpenVINO behind the detectors' backend interface (see ``detect.backend``).

Both run the files deploy.export writes (model.onnx FP32, model_fp16.onnx, model_int8.onnx
QDQ) and share one rule for batches: a graph exported for a fixed batch gets exactly that many
images per run (the last chunk padded), a dynamic one at most ``max_batch``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from detect.errors import WeightsError
from detect.infer.metadata import read_metadata
from detect.infer.tensorrt import TrtBackend
from detect.infer.threads import cpu_threads

BACKENDS = ("auto", "onnxruntime", "openvino")  # auto: PyTorch for .pt, ONNX Runtime for .onnx, TensorRT for .engine


class DeployedBackend:
    """What both runtimes share: metadata, the fixed input shape, batch chunking."""

    def __init__(self, path: str | Path, device: torch.device):
        self.path, self.device = Path(path), device
        self.meta = read_metadata(self.path)
        if "nms" in self.meta:
            raise WeightsError(
                f"{path}: this graph has NMS inside (final boxes); val and predict need the raw "
                "output: use model.onnx, model_fp16.onnx or model_int8.onnx"
            )
        self.names: list[str] = self.meta["names"]
        self.stride = int(self.meta["stride"])
        batch, _, h, w = self.meta["input_shape"]
        self.fixed_shape = (int(h), int(w)) if h > 0 and w > 0 else None  # None: dynamic axes, any stride multiple
        self.static_batch = batch != -1  # a fixed-batch graph takes exactly `max_batch` images
        self.max_batch = int(batch) if self.static_batch else (int(self.meta.get("max_batch", 0)) or None)
        self.precision = self.meta.get("precision", "fp32")
        self.output = self.meta.get("output_name")  # the decoded output (None: the first one, as ours)
        # the official exporter's --half graphs take FP16 input; deploy.export's keep FP32 inputs and outputs
        self.input_dtype = np.float16 if self.meta.get("exporter") != "deploy.export" and self.precision == "fp16" \
            else np.float32

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().cpu()
        if self.fixed_shape is not None and tuple(x.shape[2:]) != self.fixed_shape:
            raise WeightsError(
                f"input {tuple(x.shape[2:])} but the ONNX graph was exported for {self.fixed_shape}; "
                "re-export with --img H W"
            )
        y = run_in_chunks(x.numpy().astype(self.input_dtype, copy=False), self.max_batch, self.static_batch, self.run)
        return torch.from_numpy(y.astype(np.float32, copy=False))

    def run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def run_in_chunks(x: np.ndarray, step: int | None, pad: bool, run: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``run`` on chunks of at most ``step`` images; with ``pad`` the last chunk is padded to ``step``
    with zeros and the padding's outputs dropped."""
    step = step or len(x)
    outs = []
    for i in range(0, len(x), step):
        chunk = x[i : i + step]
        n = len(chunk)
        if pad and n < step:
            chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(run(np.ascontiguousarray(chunk))[:n])
    return np.concatenate(outs)


class OnnxBackend(DeployedBackend):
    """ONNX Runtime; the CUDA provider when asked for and present in this onnxruntime build."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, device: torch.device):
        import onnxruntime as ort  # lazy: loaded when an .onnx model is opened

        super().__init__(path, device)
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise WeightsError(
                    f"{path}: --device {device} asked for CUDA but this onnxruntime has no CUDA provider "
                    "(pip install onnxruntime-gpu on a GPU host)"
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), providers=providers)  # external data: read from beside it
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run([self.output] if self.output else None, {self.input_name: x})[0]


class OpenVinoBackend(DeployedBackend):
    """OpenVINO on the CPU, reading the ONNX file directly (QDQ models run in INT8).

    OpenVINO's CPU plugin defaults to bf16 inference where the CPU has it: FP32 is asked for
    explicitly, and ``half`` asks for bf16 (f16 where bf16 is missing) — lower precision on
    purpose, as ``--half`` means elsewhere.
    """

    name = "openvino"

    def __init__(self, path: str | Path, device: torch.device, half: bool = False):
        if device.type != "cpu":
            raise WeightsError(f"{path}: --backend openvino runs on the CPU here; use --device cpu")
        try:
            import openvino as ov  # lazy: an optional runtime: loaded when a model runs on it
        except ImportError:
            raise WeightsError("--backend openvino: the openvino package is not installed (pip install -r requirements.txt)") from None
        super().__init__(path, device)
        core = ov.Core()
        config = openvino_config(core, half)
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.inference_precision = config["INFERENCE_PRECISION_HINT"]
        self.output_port = self.compiled.output(self.output) if self.output else self.compiled.output(0)

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.array(self.request.infer({0: x})[self.output_port])  # the request reuses its buffer: copy


def openvino_config(core, half: bool = False) -> dict:
    """The CPU plugin settings deployment runs with (val, predict, bench and benchmarks/int8_profile.py alike):
    FP32 asked for explicitly, ``half`` bf16 (f16 where the CPU lacks bf16), latency hint, the process's CPU
    threads (``detect.infer.threads.cpu_threads``: torch's, before a CPU runtime took them over)."""
    precision = openvino_half_precision(core) if half else "f32"
    return {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": cpu_threads()}


def openvino_half_precision(core=None) -> str:
    """What ``half`` means on this CPU for OpenVINO: bf16 where the CPU has it, else f16."""
    if core is None:
        import openvino as ov  # lazy: an optional runtime: loaded when a model runs on it

        core = ov.Core()
    return "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f16"


def load_deployed(path: str | Path, device: torch.device, half: bool = False, backend: str = "auto"):
    suffix = Path(path).suffix.lower()
    if backend not in BACKENDS:
        raise WeightsError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if suffix == ".onnx":
        if backend == "openvino":
            return OpenVinoBackend(path, device, half)
        if half:
            raise WeightsError(f"{path}: --half does not apply to ONNX Runtime; use model_fp16.onnx instead")
        return OnnxBackend(path, device)
    if backend not in ("auto",):
        raise WeightsError(f"{path}: --backend {backend} runs .onnx files; a .engine runs in TensorRT")

    return TrtBackend(path, device, half)
