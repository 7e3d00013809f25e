"""Evaluation as a library: detections over a split in rectangular batches, COCO mAP, timing.

``detect.val`` is its command line; training's validation (``detect.train.engine``), pruning's scores,
the INT8 export's check and the benches call these functions directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from detect.boxes import non_max_suppression
from detect.data.dataset import EvalDataset, load_image
from detect.data.labels import Sample
from detect.infer.merge import fuse
from detect.infer.predictor import Predictor
from detect.metrics import coco_ground_truth, evaluate


class TimedBackend:
    """A backend that adds the seconds spent inside it (CUDA synchronised) to ``seconds``."""

    def __init__(self, backend):
        self.backend, self.seconds = backend, 0.0
        self.names, self.stride, self.fixed_shape = backend.names, backend.stride, backend.fixed_shape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        y = self.backend(x)
        if y.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t0
        return y


# Rectangular batches pad every image to its batch's shape, so the batch size moves mAP (a coco128 fine-tune
# at 320: 0.2268 at 16 against 0.2416 at 32): the trainer and python -m prune validate at this size, so their
# logs and ``python -m detect.val`` report the same figure for the same weights.
DEFAULT_BATCH = 16


@dataclass(frozen=True)
class EvalConfig:
    """How one model is run over a split for COCO mAP (official val.py's defaults)."""

    img_size: int = 640
    batch_size: int = DEFAULT_BATCH
    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 300  # NMS keeps this many per image
    coco_max_det: int = 100  # COCOeval's last maxDets: COCO's standard and official val.py's
    stride: int = 32
    workers: int = 2
    progress: bool = True
    fixed_shape: tuple[int, int] | None = None  # every image letterboxed to this (a fixed-shape graph)
    shard: tuple[int, int] = (0, 1)  # (rank, world): under DDP each rank runs its share of the batches


def batched_detections(infer: Callable[[torch.Tensor], torch.Tensor], samples: list[Sample],
                       c: EvalConfig) -> tuple[dict[int, torch.Tensor], dict]:
    """Run ``infer`` (float batch in [0, 1] -> decoded (b, N, 5 + nc)) over ``samples`` in rectangular
    batches, multi-label NMS. Returns {sample index: (n, 6) in original pixels} and seconds spent
    in pre-processing, inference and NMS."""
    dataset = EvalDataset(samples, c.img_size, c.batch_size, c.stride, rect=c.fixed_shape is None)
    if c.fixed_shape is not None:
        dataset.shapes[:] = c.fixed_shape
    out: dict[int, torch.Tensor] = {}
    seconds = {"pre": 0.0, "inference": 0.0, "nms": 0.0}
    bar = tqdm(dataset.loader(c.workers, c.shard), desc="val", unit="batch", disable=None if c.progress else True, leave=False)
    for images, letterboxes, indices in bar:
        t0 = time.perf_counter()
        x = images.float().div_(255)
        t1 = time.perf_counter()
        pred = infer(x)
        if pred.is_cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        dets = non_max_suppression(pred, c.conf, c.iou, multi_label=True, max_det=c.max_det)
        for det, lb, index in zip(dets, letterboxes, indices):
            det = det.cpu()
            det[:, :4] = lb.to_original(det[:, :4])
            out[index] = det
        t3 = time.perf_counter()
        for k, dt in zip(seconds, (t1 - t0, t2 - t1, t3 - t2)):
            seconds[k] += dt
    return out, seconds


def gather_detections(dets: dict[int, torch.Tensor], rank: int, world: int) -> dict[int, torch.Tensor]:
    """Every rank's {sample index: detections} merged on rank 0 (the others get {}); one collective."""
    parts = [None] * world if rank == 0 else None
    dist.gather_object(dets, parts, dst=0)
    return {k: v for part in parts for k, v in part.items()} if rank == 0 else {}


def coco_results(dets: dict[int, torch.Tensor]) -> list[dict]:
    """{image id: (n, 6) xyxy} -> COCO results (bbox xywh)."""
    results = []
    for index in sorted(dets):
        for x1, y1, x2, y2, score, cls in dets[index].tolist():
            results.append({"image_id": index, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
    return results


def run_eval(infer: Callable[[torch.Tensor], torch.Tensor], samples: list[Sample], names: list[str],
             c: EvalConfig = EvalConfig()) -> tuple[dict, list[dict]]:
    """One plain model over ``samples`` (what training's validation runs). Returns the metrics dict
    (``detect.metrics.evaluate`` plus ``speed_ms``) and the COCO detections in original-image pixels.
    Sharded (``c.shard``), every rank must call it: rank 0 merges the detections and scores them, the
    others get ({}, [])."""
    t_start = time.perf_counter()
    dets, seconds = batched_detections(infer, samples, c)
    if c.shard[1] > 1:
        dets = gather_detections(dets, *c.shard)
        if c.shard[0] != 0:
            return {}, []
    wall = time.perf_counter() - t_start
    detections = coco_results(dets)
    result = evaluate(coco_ground_truth(samples, names), detections, names, max_det=c.coco_max_det)
    n = max(len(samples), 1)
    result["speed_ms"] = {k: 1e3 * v / n for k, v in seconds.items()} | {"total": 1e3 * wall / n}
    result["images"] = len(samples)
    result["wall_s"] = wall
    return result, detections


def fixed_shape_map(backend, samples: list[Sample], names: list[str], shape: tuple[int, int], batch: int = 8) -> dict:
    """mAP50-95 and mAP50 of one backend with every image letterboxed to ``shape``, as a deployed,
    fixed-shape graph runs (the benches and the INT8 export's check)."""
    c = EvalConfig(max(shape), batch, stride=backend.stride, fixed_shape=tuple(shape), progress=False)
    m, _ = run_eval(backend, samples, names, c)
    return {"map50_95": m["map50_95"], "map50": m["map50"]}


def predictor_detections(predictor: Predictor, samples: list[Sample], batch_size: int = 16, workers: int = 2,
                         progress: bool = True) -> tuple[dict[int, torch.Tensor], dict]:
    """Each member over the dataset (rectangular batches, or image by image when slicing), then
    fused per image. Inference seconds are those spent inside the members' ``TimedBackend``s."""
    c = predictor.config
    per_member, pre = [], 0.0
    t_start = time.perf_counter()
    for m in predictor.members:
        if c.slice_hw is None:
            dets, seconds = batched_detections(m.backend, samples, EvalConfig(
                m.img_size, batch_size, c.conf, c.iou, c.max_det, stride=m.backend.stride, workers=workers,
                progress=progress, fixed_shape=m.backend.fixed_shape))
            pre += seconds["pre"]
        else:
            dets = {}
            for i, s in enumerate(tqdm(samples, desc="val (sliced)", unit="img", disable=None if progress else True, leave=False)):
                t0 = time.perf_counter()
                img = load_image(s.path)
                pre += time.perf_counter() - t0
                dets[i] = predictor.member_detections(m, img)
        per_member.append(dets)
    weights = [m.weight for m in predictor.members]
    fused = {
        i: fuse([d[i] for d in per_member], (s.height, s.width), c, weights)
        for i, s in enumerate(samples)
    }
    wall = time.perf_counter() - t_start
    timed = {id(t): t for t in (_timed(m.backend) for m in predictor.members) if t is not None}  # shared backends once
    inference = sum(t.seconds for t in timed.values())
    return fused, {"pre": pre, "inference": inference, "nms": max(0.0, wall - pre - inference), "total": wall}


def _timed(backend) -> TimedBackend | None:
    """The member's TimedBackend (None for a predictor built without timing: its inference time reads as 0)."""
    while not isinstance(backend, TimedBackend):
        backend = getattr(backend, "backend", None)  # through AugmentedBackend and the class map
        if backend is None:
            return None
    return backend
