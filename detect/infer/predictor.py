"""One image in, final boxes out: the composition of plain, TTA, sliced and ensembled inference.

    from detect.infer.predictor import InferenceConfig, Predictor
    predictor = Predictor.from_weights(["a.pt", "b.onnx"], [640, 800], device, InferenceConfig(augment=True))
    det = predictor(bgr_image)  # (n, 6) x1, y1, x2, y2, score, class in original pixels

A *member* is one backend at one image size; several members (models x sizes) are fused per
image with WBF or NMS. Within a member: TTA wraps the backend (merged before NMS), slicing
adds the windows' boxes to the full-image pass and merges them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from detect.backend import load_backend
from detect.boxes import non_max_suppression, prepare_image
from detect.data.dataset import to_tensor
from detect.infer.classmap import for_data
from detect.infer.config import InferenceConfig
from detect.infer.merge import fuse
from detect.infer.slicing import merge_slices, sliced_detections
from detect.infer.tta import AugmentedBackend


@dataclass
class Member:
    backend: object
    img_size: int
    weight: float = 1.0


@dataclass
class Predictor:
    members: list[Member]
    config: InferenceConfig = field(default_factory=InferenceConfig)

    def __post_init__(self):
        if not self.members:
            raise ValueError("a predictor needs at least one member")
        names = self.members[0].backend.names
        for m in self.members[1:]:
            if list(m.backend.names) != list(names):
                raise ValueError("ensemble members predict different classes: fuse only models of one dataset")
        self.names = list(names)
        if self.config.augment:
            for m in self.members:
                if not isinstance(m.backend, AugmentedBackend):
                    m.backend = AugmentedBackend(m.backend)

    @classmethod
    def from_weights(cls, weights, img_sizes, device, config: InferenceConfig, half=False, model_weights=None,
                     backend: str = "auto", data: tuple[list[str], str, bool] | None = None):
        """Members for every weights file at every image size; ``model_weights`` (one per file) weight WBF;
        ``backend`` picks the runtime of .onnx files (``detect.backend.load_backend``); ``data`` (names, where,
        by name) makes each model predict those classes (``detect.infer.classmap.for_data``)."""
        model_weights = model_weights or [1.0] * len(weights)
        members = []
        for w, mw in zip(weights, model_weights):
            runtime = load_backend(w, device, half, backend)
            if data is not None:
                runtime = for_data(runtime, data[0], data[2], str(w), data[1])
            members += [Member(runtime, int(s), float(mw)) for s in img_sizes]
        return cls(members, config)

    def __call__(self, img: np.ndarray) -> torch.Tensor:
        dets = [self.member_detections(m, img) for m in self.members]
        c = self.config
        return fuse(dets, img.shape[:2], c, [m.weight for m in self.members])

    def member_detections(self, m: Member, img: np.ndarray) -> torch.Tensor:
        c = self.config
        if c.slice_hw is None:
            return self.whole_image(m, img)
        det = sliced_detections(m.backend, img, m.img_size, c)
        if c.full:
            det = torch.cat((self.whole_image(m, img), det))
        return merge_slices(det, c)

    def whole_image(self, m: Member, img: np.ndarray) -> torch.Tensor:
        return whole_image_detections(m.backend, img, m.img_size, self.config)[0]


def whole_image_detections(backend, img: np.ndarray, img_size: int, c: InferenceConfig):
    """One forward pass on the letterboxed image: ((n, 6) in original pixels, its ``Letterbox``)."""
    net, lb = prepare_image(img, img_size, backend.stride, shape=backend.fixed_shape, interpolation=c.interpolation)
    x = to_tensor(net)[None].float().div_(255)
    det = non_max_suppression(backend(x), c.conf, c.iou, c.classes, c.agnostic, c.multi_label, c.max_det)[0].cpu()
    det[:, :4] = lb.to_original(det[:, :4])
    return det, lb
