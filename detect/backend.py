"""One inference interface over every weights format the CLIs accept.

A backend takes a float batch (b, 3, h, w) in [0, 1] and returns the decoded YOLOv5 output
(b, N, 5 + nc). ``detect.val`` and ``detect.predict`` only ever talk to this interface.
"""

from __future__ import annotations

from pathlib import Path

import torch

from detect.errors import UsageError
from detect.infer.runtimes import load_deployed
from detect.infer.threads import unwrap
from detect.weights import WeightsError, load_model


class TorchBackend:
    """Our checkpoints and official YOLOv5 ``.pt`` files, BN fused, optionally FP16 on CUDA."""

    name = "pytorch"

    def __init__(self, weights: str | Path, device: torch.device, half: bool = False):
        if half and device.type != "cuda":
            raise WeightsError(f"{weights}: --half needs a CUDA device (FP16 convolutions are not run on CPU)")
        self.model, self.ckpt = load_model(weights, device)
        self.device, self.half = device, half
        self.precision = "fp16" if half else "fp32"
        if half:
            self.model.half()
        # NHWC is faster for these convolutions on CUDA and on CPU (oneDNN): 22% at 384x640 here.
        self.model.to(memory_format=torch.channels_last)
        self.names: list[str] = self.ckpt["names"]
        self.stride = int(self.model.stride.max())
        self.fixed_shape: tuple[int, int] | None = None  # any stride-aligned shape works

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        x = (x.half() if self.half else x.float()).contiguous(memory_format=torch.channels_last)
        return self.model(x).float()


def check_input_size(backend, img: int, weights) -> None:
    """A graph exported at a fixed shape runs at that shape only: another --img is an error naming both."""
    shape = getattr(backend, "fixed_shape", None)
    if shape is not None and img != max(shape):
        raise UsageError(
            f"{weights} was exported for a fixed {shape[0]}x{shape[1]} input (--img {max(shape)}), but --img {img} "
            f"was given: use --img {max(shape)}, or re-export with python -m deploy.export --img H W"
        )


def load_backend(weights: str | Path, device: torch.device, half: bool = False, backend: str = "auto"):
    """The runtime for ``weights``; ``backend`` picks among those that run its format."""
    suffix = Path(weights).suffix.lower()
    if suffix in (".onnx", ".engine"):
        return load_deployed(weights, device, half, backend)
    if backend != "auto":
        raise WeightsError(f"{weights}: --backend {backend} runs .onnx files; export with python -m deploy.export")
    return TorchBackend(weights, device, half)


def runtime_info(backend) -> dict:
    """What runs a (possibly wrapped) backend, for the JSON reports: ``runtime`` (pytorch, onnxruntime,
    openvino, tensorrt) and ``precision`` (the graph's: fp32, fp16, int8; OpenVINO adds its inference type)."""
    backend = unwrap(backend)
    info = {"runtime": getattr(backend, "name", "pytorch"), "precision": getattr(backend, "precision", "fp32")}
    if getattr(backend, "inference_precision", None):
        info["inference_precision"] = backend.inference_precision
    return info
