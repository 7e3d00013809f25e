"""Image loading and the evaluation dataset (rectangular batches, as the official val.py).

Evaluation sorts images by aspect ratio and gives each batch the smallest stride-aligned
shape that holds all of its images (``boxes.batch_shapes``): far less padding than square
640x640 inputs, and the same input the official implementation sees, hence the same mAP.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from detect.boxes import Letterbox, prepare_image
from detect.geometry import batch_shapes
from detect.data.images import decode_image
from detect.data.labels import Sample


def load_image(path: str | Path) -> np.ndarray:
    """BGR uint8 HxWx3, EXIF orientation applied, grey/RGBA/16-bit converted (see ``detect.data.images``)."""
    return decode_image(path)


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` for every loader: workers ignore SIGINT/SIGTERM (the main process
    decides when they end, so a signal to the whole process group cannot kill them mid-batch and
    crash the main one), and OpenCV runs single-threaded in them (its pool would fight the model's)."""
    import signal  # lazy: in the data-loading worker process only

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)
    cv2.setNumThreads(0)


def release_workers(loader: DataLoader) -> None:
    """End a loader's persistent workers now, not whenever the garbage collector frees the loader.

    They ignore SIGTERM (``init_worker``), and at interpreter exit torch leaves them to multiprocessing's exit
    handler, which terminates and then joins them: a worker still alive then is joined forever, and the
    process hangs after its work is done (a 30-epoch prune did, 2026-12-05: the training run sat in a
    reference cycle). torch has no public call for this; the iterator's own shutdown sends each worker its
    stop sentinel and joins it."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        loader._iterator = None
        iterator._shutdown_workers()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC BGR uint8 -> CHW RGB uint8 tensor (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))


class EvalDataset(Dataset):
    """Samples in aspect-ratio order, each letterboxed to its batch's shape.

    Items are ``(image CHW uint8, Letterbox, sample index)``; use ``loader()`` to get batches
    whose members share one shape.
    """

    def __init__(self, samples: list[Sample], img_size: int = 640, batch_size: int = 16, stride: int = 32, rect: bool = True):
        self.img_size, self.batch_size, self.stride = img_size, batch_size, stride
        hw = np.array([[s.height, s.width] for s in samples], dtype=np.float64).reshape(-1, 2)
        self.order = np.argsort(hw[:, 0] / hw[:, 1], kind="stable") if rect else np.arange(len(samples))
        self.samples = samples
        if rect and len(samples):
            self.shapes = batch_shapes(hw[self.order], batch_size, img_size, stride)
        else:
            self.shapes = np.full((max(1, -(-len(samples) // batch_size)), 2), img_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Letterbox, int]:
        index = int(self.order[i])
        img = load_image(self.samples[index].path)
        shape = tuple(int(v) for v in self.shapes[i // self.batch_size])
        out, lb = prepare_image(img, self.img_size, self.stride, shape=shape)
        return to_tensor(out), lb, index

    @staticmethod
    def collate(batch):
        images, boxes, indices = zip(*batch)
        return torch.stack(images), list(boxes), list(indices)

    def loader(self, workers: int = 2, shard: tuple[int, int] = (0, 1)) -> DataLoader:
        """Batches in order; with ``shard=(rank, world)`` only every world-th batch from ``rank``: whole batches,
        so each image is letterboxed as in one process and the merged detections are the same."""
        rank, world = shard
        n = len(self)
        batches = [list(range(b, min(b + self.batch_size, n))) for b in range(0, n, self.batch_size)]
        return DataLoader(
            self,
            batch_sampler=batches[rank::world],
            num_workers=workers,
            collate_fn=self.collate,
            persistent_workers=False,
            worker_init_fn=init_worker,
        )
