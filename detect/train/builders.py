"""Builders: turn a TrainConfig into the model, the data pipeline and the optimisation objects.

In the spirit of DETR's ``build(args)``: each returns ready objects and a note for the log, and
none starts training. ``fit`` assembles them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from detect.data.config import DataConfig, load_data_config
from detect.data.dataset import init_worker
from detect.data.labels import Sample, scan_split
from detect.data.train_dataset import EpochSampler, TrainDataset, class_balanced_weights
from detect.errors import UsageError
from detect.hyp import Hyp
from detect.model import YOLOv5, build_model, default_arch, parse_model_name
from detect.optim import ModelEMA, build_optimizer, lr_lambda
from detect.train.config import TrainConfig
from detect.weights import load_checkpoint


# --------------------------------------------------------------------------- data
@dataclass
class Data:
    cfg: DataConfig
    train: list[Sample]
    val: list[Sample]
    val_split: str
    sampler: EpochSampler
    loader: DataLoader
    batches: int  # per epoch, per process


def build_data(config: TrainConfig, rank: int, world: int, pin_memory: bool, progress: bool) -> Data:
    hyp = config.hyp
    cfg = load_data_config(config.data)
    train, report = scan_split(cfg, "train", progress=progress)
    val_split = "val" if "val" in cfg.splits else "train"
    val, _ = scan_split(cfg, val_split, progress=progress)
    if progress:
        for line in report.lines(3):
            print(line)
    if not train:
        raise UsageError(f"{config.data}: the train split has no usable images")
    if config.batch > len(train):
        raise UsageError(
            f"--batch {config.batch} is larger than the {len(train)} training images; use --batch {len(train)} or less"
        )
    if config.batch % world:
        raise UsageError(f"--batch {config.batch} must be divisible by the {world} processes")
    dataset = TrainDataset(train, config.img, hyp, augment_data=True, cache_ram=config.cache == "ram",
                           seed=config.seed, mosaic_until=config.epochs - hyp.close_mosaic)
    weights = class_balanced_weights(train, cfg.nc) if hyp.class_balanced else None
    sampler = EpochSampler(len(dataset), rank, world, config.seed, weights)
    batch = config.batch // world
    kw = dict(batch_size=batch, sampler=sampler, num_workers=config.workers, collate_fn=TrainDataset.collate,
              pin_memory=pin_memory, drop_last=False, worker_init_fn=init_worker)
    if config.workers > 0:  # epochs travel in the sampler's keys, so workers persist
        kw.update(persistent_workers=True, prefetch_factor=2)
    loader = DataLoader(dataset, **kw)
    return Data(cfg, train, val, val_split, sampler, loader, math.ceil(len(sampler) / batch))


# --------------------------------------------------------------------------- model
def build_arch(config: TrainConfig, nc: int, init: dict | None) -> dict:
    model = config.model
    if model is None:
        arch = dict(init["arch"]) if init else default_arch("yolov5s", nc)
    elif Path(model).suffix in (".yaml", ".yml", ".json"):
        arch = yaml.safe_load(Path(model).read_text())
    elif Path(model).suffix == ".pt":
        arch = dict(load_checkpoint(model)["arch"])
    else:
        try:
            arch = default_arch(parse_model_name(model), nc)
        except ValueError as e:
            raise UsageError(str(e)) from None
    arch["nc"] = nc
    if config.anchors:
        arch["anchors"] = yaml.safe_load(Path(config.anchors).read_text())["anchors"]
    return arch


def build_train_model(config: TrainConfig, names: list[str]) -> tuple[YOLOv5, str]:
    """The model to train and a note of where its weights came from."""
    init = load_checkpoint(config.weights) if config.weights else None
    model = build_model(build_arch(config, len(names), init))
    if init is None:
        return model, "random initialisation"
    own = model.state_dict()
    src = init["ema"] if init.get("ema") is not None else init["model"]
    mapping = head_class_map(init.get("names") or [], names) if config.head_transfer else None
    head = head_prefix(model)
    fit = {
        k: v
        for k, v in src.items()
        if k in own and own[k].shape == v.shape and not (config.anchors and k.endswith("anchors"))
        and not (mapping is not None and k.startswith(head))
    }
    model.load_state_dict(fit, strict=False)
    note = f"{len(fit)}/{len(own)} tensors from {config.weights}"
    if mapping is not None:
        rows = transfer_head(model, src, mapping, len(init["names"]))
        kept = sum(j >= 0 for j in mapping)
        note += (f"; output layers: box and objectness rows kept, class rows kept by name for {kept} of "
                 f"{len(names)} classes ({rows} tensors)")
    return model, note


def head_class_map(old: list[str], new: list[str]) -> list[int] | None:
    """For each new class, the index of the same name (case-insensitive) among the weights' classes, -1 if none.

    None when the names are identical (plain loading is right) or the weights carry no names.
    """
    if not old or [n.lower() for n in old] == [n.lower() for n in new]:
        return None
    index = {n.lower(): i for i, n in enumerate(old)}
    return [index.get(n.lower(), -1) for n in new]


def head_prefix(model: YOLOv5) -> str:
    """State-dict prefix of the output convolutions (``model.24.m.`` in the official layout)."""
    return next(name for name, m in model.named_modules() if m is model.detect) + ".m."


@torch.no_grad()
def transfer_head(model: YOLOv5, src: dict, mapping: list[int], old_nc: int) -> int:
    """Copy each output convolution's box and objectness rows (class-agnostic: where and how likely an
    object is) and the rows of classes found by name; other class rows keep their fresh initialisation.
    Returns the number of tensors copied."""
    det, prefix = model.detect, head_prefix(model)
    old_no, new_no, copied = old_nc + 5, det.no, 0
    pairs = [(k, k) for k in range(5)] + [(5 + j, 5 + i) for i, j in enumerate(mapping) if j >= 0]
    rows_old = [a * old_no + o for a in range(det.na) for o, _ in pairs]
    rows_new = [a * new_no + n for a in range(det.na) for _, n in pairs]
    for i, conv in enumerate(det.m):
        for name in ("weight", "bias"):
            old = src.get(f"{prefix}{i}.{name}")
            if old is None or old.shape[0] != det.na * old_no or old.shape[1:] != getattr(conv, name).shape[1:]:
                continue
            getattr(conv, name)[rows_new] = old[rows_old].to(getattr(conv, name).dtype)
            copied += 1
    return copied


# --------------------------------------------------------------------------- optimisation
@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    ema: ModelEMA
    lr_at: object  # epoch -> LR multiplier
    accumulate: int
    warmup_iters: int
    amp_dtype: torch.dtype | None  # None: full precision


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """fp16/bf16 autocast on CUDA; on the CPU only bf16 (where it pays: AVX512-BF16 / AMX)."""
    if amp == "off" or (device.type == "cpu" and amp != "bf16"):
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16


def warmup_iterations(hyp: Hyp, batches: int, epochs: int) -> tuple[int, str]:
    """YOLOv5's warmup: ``warmup_epochs`` of iterations, raised to a floor of 100 iterations — but the
    floor never beyond ``warmup_max_share`` of the run (it made short fine-tunes warmup from end to end)."""
    if hyp.warmup_epochs <= 0:
        return 0, "no warmup"
    total = batches * epochs
    by_epochs = round(hyp.warmup_epochs * batches)
    floor = min(100, int(hyp.warmup_max_share * total))
    iters = max(by_epochs, floor)
    if iters == by_epochs or floor == 100:
        return iters, f"warmup {iters} iterations ({iters / total:.0%} of the run)"
    return iters, (f"warmup {iters} iterations (the 100-iteration floor capped at {hyp.warmup_max_share:.0%} "
                   f"of the run's {total})")


def build_optimization(config: TrainConfig, model: YOLOv5, batches: int, device: torch.device) -> Optimization:
    hyp = config.hyp
    accumulate = max(round(hyp.nominal_batch / config.batch), 1)
    optimizer = build_optimizer(model, hyp, config.batch, accumulate)
    lr_at = lr_lambda(hyp, config.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lr_at)
    dtype = amp_dtype(config.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    ema = ModelEMA(model, hyp.ema_decay, hyp.ema_tau)
    warmup, _ = warmup_iterations(hyp, batches, config.epochs)
    return Optimization(optimizer, scheduler, scaler, ema, lr_at, accumulate, warmup, dtype)
