"""TensorRT engine runtime behind the detectors' backend interface.

Inputs and outputs are torch CUDA tensors bound by address (``set_tensor_address`` +
``execute_async_v3``, TensorRT 8.5 and later; no pycuda) on a stream of our own (the legacy
default stream makes TensorRT add device synchronisations). Everything runs under the engine's
device, so ``--device cuda:1`` loads and runs on GPU 1. Batches larger than the engine's
profile are cut into chunks, and a fixed-batch engine gets its last chunk padded, as ONNX
Runtime's backend does. Outputs whose shape depends on the data (an NMS engine's) are
allocated by TensorRT through an ``IOutputAllocator`` once their size is known.
Metadata (names, stride, input shape, precision, TensorRT version, GPU) comes from ``<engine>.json``.
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
        import tensorrt as trt  # lazy: GPU hosts only (requirements-trt.txt)
    except ImportError:
        raise WeightsError(
            f"{what}: the TensorRT Python package is not installed (pip install -r requirements-trt.txt on a GPU host)"
        ) from None
    return trt


def torch_dtypes(trt) -> dict:
    """TensorRT -> torch element types, for the types this TensorRT version has."""
    pairs = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
             "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
    return {getattr(trt.DataType, k): v for k, v in pairs.items() if hasattr(trt.DataType, k)}


def chunks(n: int, lo: int, hi: int, fixed: bool) -> list[tuple[int, int, int]]:
    """(start, stop, padded size) pieces of a batch of ``n`` for a profile of batch ``lo``..``hi``: at
    most ``hi`` images each; a fixed-batch engine (lo == hi) gets its last piece padded to ``hi``."""
    out = []
    for start in range(0, n, hi):
        stop = min(start + hi, n)
        out.append((start, stop, hi if fixed else max(stop - start, lo)))
    return out


def make_output_allocator(trt, device: torch.device):
    """An ``IOutputAllocator`` handing TensorRT torch memory for data-dependent outputs."""

    class TorchOutputAllocator(trt.IOutputAllocator):
        def __init__(self):
            trt.IOutputAllocator.__init__(self)
            self.buffers: dict[str, torch.Tensor] = {}
            self.shapes: dict[str, tuple] = {}

        def reallocate_output(self, tensor_name, memory, size, alignment):
            buf = self.buffers.get(tensor_name)
            if buf is None or buf.numel() < size:
                buf = torch.empty(max(size, 1), dtype=torch.uint8, device=device)
                self.buffers[tensor_name] = buf
            return buf.data_ptr()

        def reallocate_output_async(self, tensor_name, memory, size, alignment, stream):
            return self.reallocate_output(tensor_name, memory, size, alignment)

        def notify_shape(self, tensor_name, shape):
            self.shapes[tensor_name] = tuple(shape)

    return TorchOutputAllocator()


class TrtBackend:
    name = "tensorrt"

    def __init__(self, path: str | Path, device: torch.device, half: bool = False):
        path = Path(path)
        trt = _require_tensorrt(str(path))
        meta_path = path.with_suffix(".json")
        if not meta_path.is_file():
            raise WeightsError(
                f"{path}: no {meta_path.name} beside the engine; build engines with python -m deploy.trt"
            )
        self.meta = json.loads(meta_path.read_text())
        self.precision = self.meta.get("precision", "fp16")
        if half and self.precision != "fp16":
            raise WeightsError(f"{path}: --half asks for FP16 but this engine was built {self.precision}; an engine's "
                               "precision is fixed when it is built (python -m deploy.trt)")
        self.device = device if device.type == "cuda" else torch.device("cuda", 0)
        self.logger = trt.Logger(trt.Logger.ERROR)
        with torch.cuda.device(self.device):
            trt.init_libnvinfer_plugins(self.logger, "")  # engines with plugin layers (EfficientNMS_TRT)
            engine = trt.Runtime(self.logger).deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise WeightsError(
                    f"{path}: TensorRT {trt.__version__} on {torch.cuda.get_device_name(self.device)} cannot load this "
                    f"engine (built with TensorRT {self.meta.get('tensorrt')} on {self.meta.get('gpu')}); engines are "
                    f"tied to one TensorRT version and GPU: rebuild with python -m deploy.trt --onnx {self.meta.get('onnx')}"
                )
            self.context = engine.create_execution_context()
            self.stream = torch.cuda.Stream(self.device)
        self.trt, self.engine = trt, engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.profile = [tuple(s) for s in engine.get_tensor_profile_shape(self.input, 0)]  # min, opt, max
        self.names = self.meta["names"]
        self.stride = int(self.meta["stride"])
        self.fixed_shape = tuple(self.meta["input_shape"][2:])
        self._dtypes = torch_dtypes(trt)
        self.allocator = None
        if any(-1 in tuple(engine.get_tensor_shape(n)) and n != self.input for n in self.outputs):
            self.allocator = make_output_allocator(trt, self.device)
            for n in self.outputs:
                self.context.set_output_allocator(n, self.allocator)

    def run(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every output for one batch that fits the profile (``__call__`` chunks larger ones)."""
        lo, hi = self.profile[0], self.profile[2]
        if any(s < a or s > b for s, a, b in zip(x.shape[1:], lo[1:], hi[1:])):
            raise WeightsError(
                f"input {tuple(x.shape)} is outside the engine's optimization profile {lo}..{hi}; "
                "rebuild with the shape you need (deploy.export --img / --dynamic-batch, then deploy.trt)"
            )
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            x = x.to(self.device, torch.float32, non_blocking=True).contiguous()
            self.context.set_input_shape(self.input, tuple(x.shape))
            self.context.set_tensor_address(self.input, x.data_ptr())
            out = {}
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                if -1 in shape:
                    continue  # data-dependent: the output allocator provides it
                out[name] = torch.empty(shape, dtype=self._dtypes[self.engine.get_tensor_dtype(name)], device=self.device)
                self.context.set_tensor_address(name, out[name].data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self.stream.synchronize()
        for name in self.outputs:
            if name not in out:
                dtype = self._dtypes[self.engine.get_tensor_dtype(name)]
                shape = self.allocator.shapes[name]
                count = int(torch.tensor(shape).prod()) if shape else 1
                out[name] = self.allocator.buffers[name].view(dtype)[:count].view(shape).clone()
        return out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if "output0" not in self.outputs:
            raise WeightsError(
                "this engine has NMS inside (final boxes); val and predict need an engine built from model.onnx"
            )
        lo, hi = self.profile[0][0], self.profile[2][0]
        results = []
        for start, stop, size in chunks(len(x), lo, hi, fixed=lo == hi):
            part = x[start:stop]
            if size > len(part):  # pad with empty images; their outputs are dropped
                part = torch.cat([part, part.new_zeros((size - len(part), *part.shape[1:]))])
            results.append(self.run(part)["output0"][: stop - start].float())
        return torch.cat(results)
