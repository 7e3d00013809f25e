"""ONNX Runtime behind the detectors' backend interface (see ``detect.backend``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from deploy.export import read_metadata
from detect.errors import WeightsError


class OnnxBackend:
    """``model.onnx`` / ``model_fp16.onnx`` from deploy.export; CUDA provider when asked and present."""

    def __init__(self, path: str | Path, device: torch.device):
        import onnxruntime as ort

        self.meta = read_metadata(Path(path))
        if "nms" in self.meta:
            raise WeightsError(
                f"{path}: this graph has NMS inside (final boxes); val and predict need the raw "
                "output: use model.onnx or model_fp16.onnx"
            )
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise WeightsError(
                    f"{path}: --device {device} asked for CUDA but this onnxruntime has no CUDA provider "
                    "(pip install onnxruntime-gpu on a GPU host)"
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        self.session = ort.InferenceSession(str(path), providers=providers)
        self.names: list[str] = self.meta["names"]
        self.stride = int(self.meta["stride"])
        batch, _, h, w = self.meta["input_shape"]
        self.fixed_shape = (int(h), int(w))
        self.static_batch = batch != -1  # a fixed-batch graph takes exactly `max_batch` images
        self.max_batch = int(batch) if self.static_batch else (int(self.meta.get("max_batch", 0)) or None)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().cpu()
        if tuple(x.shape[2:]) != self.fixed_shape:
            raise WeightsError(
                f"input {tuple(x.shape[2:])} but the ONNX graph was exported for {self.fixed_shape}; "
                "re-export with --img H W"
            )
        step = self.max_batch or len(x)
        outs = []
        for i in range(0, len(x), step):
            chunk = x[i : i + step].numpy()
            if self.static_batch and len(chunk) < step:  # a fixed-batch graph: pad the last chunk
                pad = np.zeros((step - len(chunk), *chunk.shape[1:]), np.float32)
                outs.append(self.session.run(None, {"images": np.concatenate([chunk, pad])})[0][: len(chunk)])
            else:
                outs.append(self.session.run(None, {"images": chunk})[0])
        return torch.from_numpy(np.concatenate(outs))


def load_deployed(path: str | Path, device: torch.device, half: bool = False):
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        if half:
            raise WeightsError(f"{path}: --half does not apply to ONNX files; use model_fp16.onnx instead")
        return OnnxBackend(path, device)
    from deploy.engine import TrtBackend

    return TrtBackend(path, device)
