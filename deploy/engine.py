"""TensorRT engine runtime behind the detectors' backend interface.

Inputs and outputs are torch CUDA tensors bound by address on the current stream
(``set_tensor_address`` + ``execute_async_v3``, TensorRT 8.5 and later) — no pycuda.
Metadata (names, stride, input shape, TensorRT version, GPU) is read from ``<engine>.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from detect.errors import WeightsError


def _require_tensorrt(what: str):
    if not torch.cuda.is_available():
        raise WeightsError(f"{what}: TensorRT engines need a CUDA GPU and none is visible here; use model.onnx instead")
    try:
        import tensorrt as trt
    except ImportError:
        raise WeightsError(
            f"{what}: the TensorRT Python package is not installed (pip install -r requirements-trt.txt on a GPU host)"
        ) from None
    return trt


class TrtBackend:
    def __init__(self, path: str | Path, device: torch.device):
        path = Path(path)
        trt = _require_tensorrt(str(path))
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise WeightsError(
                f"{path}: no {meta_path.name} beside the engine; build engines with python -m deploy.trt"
            )
        self.meta = json.loads(meta_path.read_text())
        self.device = device if device.type == "cuda" else torch.device("cuda", 0)
        self.logger = trt.Logger(trt.Logger.ERROR)
        engine = trt.Runtime(self.logger).deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise WeightsError(
                f"{path}: TensorRT {trt.__version__} on {torch.cuda.get_device_name(self.device)} cannot load this engine "
                f"(built with TensorRT {self.meta.get('tensorrt')} on {self.meta.get('gpu')}); engines are tied to one "
                f"TensorRT version and GPU: rebuild with python -m deploy.trt --onnx {self.meta.get('onnx')}"
            )
        self.trt, self.engine = trt, engine
        self.context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.profile = [tuple(s) for s in engine.get_tensor_profile_shape(self.input, 0)]  # min, opt, max
        self.names = self.meta["names"]
        self.stride = int(self.meta["stride"])
        self.fixed_shape = tuple(self.meta["input_shape"][2:])
        self._dtypes = {
            trt.DataType.FLOAT: torch.float32,
            trt.DataType.HALF: torch.float16,
            trt.DataType.INT32: torch.int32,
            trt.DataType.INT8: torch.int8,
            trt.DataType.BOOL: torch.bool,
        }
        if hasattr(trt.DataType, "INT64"):
            self._dtypes[trt.DataType.INT64] = torch.int64

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        lo, hi = self.profile[0], self.profile[2]
        if any(s < a or s > b for s, a, b in zip(x.shape, lo, hi)):
            raise WeightsError(
                f"input {tuple(x.shape)} is outside the engine's optimization profile {lo}..{hi}; "
                "rebuild with the shape you need (deploy.export --img / --dynamic-batch, then deploy.trt)"
            )
        x = x.to(self.device, torch.float32).contiguous()
        self.context.set_input_shape(self.input, tuple(x.shape))
        self.context.set_tensor_address(self.input, x.data_ptr())
        out = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self._dtypes[self.engine.get_tensor_dtype(name)], device=self.device)
            self.context.set_tensor_address(name, out[name].data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        stream.synchronize()
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if "output0" not in self.outputs:
            raise WeightsError(
                "this engine has NMS inside (final boxes); val and predict need an engine built from model.onnx"
            )
        return self.run(x)["output0"].float()
