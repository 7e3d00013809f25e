"""The training dataset, its collate function and samplers.

Every random choice for sample ``i`` in epoch ``e`` comes from a generator seeded with
``(seed, e, i)``: a resumed run and an uninterrupted one see identical batches, whatever
the number of workers. The sampler hands out ``(i, e)`` keys, so the dataset holds no
per-epoch state and data-loading workers can persist across epochs.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from detect.boxes import resize_long_side
from detect.data import augment
from detect.data.dataset import load_image, to_tensor
from detect.data.labels import IGNORE_CLASS, Sample
from detect.hyp import Hyp


def _xyxy_pixels(boxes: np.ndarray, h: int, w: int) -> np.ndarray:
    b = boxes.astype(np.float64)
    return np.stack([(b[:, 0] - b[:, 2] / 2) * w, (b[:, 1] - b[:, 3] / 2) * h,
                     (b[:, 0] + b[:, 2] / 2) * w, (b[:, 1] + b[:, 3] / 2) * h], 1).reshape(-1, 4)


class TrainDataset(Dataset):
    """Items: (image CHW uint8 RGB, labels (n, 6) = 0, class, cx, cy, w, h normalised).

    Ignore regions (``Sample.ignore``) travel through every augmentation as boxes of class -1; the loss
    takes them out of the targets and masks the objectness there.

    Output images are ``img_size`` square. With ``hyp.slice`` each image first gives a
    random window at native resolution; otherwise it is resized so its long side is ``img_size``.
    """

    def __init__(self, samples: list[Sample], img_size: int, hyp: Hyp, augment_data: bool = True,
                 cache_ram: bool = False, seed: int = 0, mosaic_until: int = 2**31):
        self.samples, self.img_size, self.hyp = samples, img_size, hyp
        self.augment, self.seed = augment_data, seed
        self.mosaic_until = mosaic_until  # first epoch without mosaic (close_mosaic)
        self.transform = augment.build_albumentations(hyp, seed) if augment_data else None
        self.cache: dict[int, np.ndarray] = {}
        if cache_ram:
            with ThreadPoolExecutor(4) as pool:
                for i, img in enumerate(pool.map(self._decode, range(len(samples)))):
                    self.cache[i] = img

    def __len__(self) -> int:
        return len(self.samples)

    def _decode(self, i: int) -> np.ndarray:
        img = load_image(self.samples[i].path)
        return img if self.hyp.slice else resize_long_side(img, self.img_size)

    def load(self, i: int, rng: np.random.Generator):
        """(image, xyxy pixel boxes, classes), long side <= img_size."""
        img = self.cache[i] if i in self.cache else self._decode(i)
        s = self.samples[i]
        boxes = _xyxy_pixels(np.concatenate([s.boxes, s.ignore]), *img.shape[:2])
        cls = np.concatenate([s.classes, np.full(len(s.ignore), IGNORE_CLASS, np.int64)])
        if self.hyp.slice and self.augment:
            img, boxes, cls = augment.random_window(img, boxes, cls, self.hyp.slice_window,
                                                    self.hyp.slice_min_visible, self.hyp.slice_object_bias, rng)
        h, w = img.shape[:2]
        if max(h, w) != self.img_size:
            r = self.img_size / max(h, w)
            nh, nw = max(1, round(h * r)), max(1, round(w * r))
            img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
            boxes = boxes * [nw / w, nh / h, nw / w, nh / h]
        return img, boxes, cls

    def _composed(self, i: int, rng: np.random.Generator, mosaic: bool):
        if mosaic and rng.random() < self.hyp.mosaic:
            picks = [i, *rng.integers(0, len(self), 3)]
            return augment.mosaic([self.load(int(k), rng) for k in picks], self.img_size, self.hyp.min_visibility, rng)
        img, boxes, cls = self.load(i, rng)
        img, boxes = augment.place_letterboxed(img, boxes, self.img_size)
        return img, boxes, cls

    def __getitem__(self, key: int | tuple[int, int]):
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng([self.seed, epoch, i])
        mosaic = self.augment and self.hyp.mosaic > 0 and epoch < self.mosaic_until
        img, boxes, cls = self._composed(i, rng, mosaic)
        if self.augment:
            if mosaic and rng.random() < self.hyp.mixup:
                other = self._composed(int(rng.integers(len(self))), rng, mosaic)
                img, boxes, cls = augment.mixup((img, boxes, cls), other, rng)
            self.transform.set_random_seed(int(rng.integers(2**31)))
            out = self.transform(image=img, bboxes=boxes.astype(np.float32).reshape(-1, 4), cls=cls)
            img, boxes, cls = out["image"], np.asarray(out["bboxes"]).reshape(-1, 4), np.asarray(out["cls"])
            if rng.random() < self.hyp.gridmask:
                img = augment.gridmask(img, self.hyp.gridmask_ratio, rng)
        s = float(self.img_size)
        labels = np.zeros((len(boxes), 6), np.float32)
        if len(boxes):
            labels[:, 1] = cls
            labels[:, 2] = (boxes[:, 0] + boxes[:, 2]) / 2 / s
            labels[:, 3] = (boxes[:, 1] + boxes[:, 3]) / 2 / s
            labels[:, 4] = (boxes[:, 2] - boxes[:, 0]) / s
            labels[:, 5] = (boxes[:, 3] - boxes[:, 1]) / s
        return to_tensor(img), torch.from_numpy(labels)

    @staticmethod
    def collate(batch):
        images, labels = zip(*batch)
        for k, lab in enumerate(labels):
            lab[:, 0] = k
        return torch.stack(images), torch.cat(labels)


def class_balanced_weights(samples: list[Sample], nc: int) -> np.ndarray:
    """Per-image sampling weight: the sum over its boxes of 1 / (boxes of that class).

    An image of rare classes is drawn more often; background images keep a small weight.
    """
    counts = np.bincount(np.concatenate([s.classes for s in samples] + [np.zeros(0, np.int64)]), minlength=nc)
    inv = 1.0 / np.maximum(counts, 1)
    w = np.array([inv[s.classes].sum() for s in samples])
    floor = w[w > 0].min() if (w > 0).any() else 1.0
    return np.where(w > 0, w, floor)


class EpochSampler(Sampler):
    """Shuffled (or class-balanced) indices for one rank, re-drawn each epoch from ``seed + epoch``.

    Works for one process and for DDP alike (each rank takes its stride of one shared draw).
    """

    def __init__(self, n: int, rank: int = 0, world: int = 1, seed: int = 0, weights: np.ndarray | None = None):
        self.n, self.rank, self.world, self.seed, self.epoch, self.start = n, rank, world, seed, 0, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.per_rank = math.ceil(n / world)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """``start``: skip this rank's first indices (a run resumed mid-epoch)."""
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        total = self.per_rank * self.world
        if self.weights is not None:
            order = torch.multinomial(self.weights, total, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
            order = torch.cat([order, order[: total - self.n]])  # pad so every rank gets as many
        return iter((i, self.epoch) for i in order[self.rank :: self.world][self.start :].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start
