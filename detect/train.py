"""Train YOLOv5: sliced and multi-scale input, albumentations, SAM, gradient normalisation,
EMA, warmup + cosine, AMP; from scratch or from official weights; resumable; DDP.

    python -m detect.train --data D --model yolov5s --weights W|'' --img 640 --epochs N --batch B \\
        --out runs/train/NAME [--hyp configs/hyp/default.yaml] [--device cuda:0] [--resume]
    torchrun --nproc_per_node 2 -m detect.train ...      # one process per GPU (gloo on CPU)

Writes DIR/weights/{last,best}.pt (our format; best by 0.1 mAP50 + 0.9 mAP50-95 of the EMA),
results.csv, results.png, TensorBoard events, train_batch*.jpg and metrics.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch.utils.data import DataLoader
from tqdm import tqdm

from detect import cli
from detect.data.config import load_data_config
from detect.data.labels import scan_split
from detect.data.train_dataset import EpochSampler, TrainDataset, _quiet_opencv, class_balanced_weights
from detect.errors import UsageError
from detect.hyp import DEFAULT as DEFAULT_HYP
from detect.hyp import load_hyp
from detect.loss import YOLOLoss, distillation_loss
from detect.model import YOLOv5, build_model, default_arch, parse_model_name
from detect.optim import (
    SAM,
    apply_warmup,
    bn_gamma_summary,
    bn_sparsity_grad,
    build_optimizer,
    ema_model,
    lr_lambda,
    normalize_gradients,
)
from detect.val import run_eval
from detect.visual import plot_results, save_batch
from detect.weights import atomic_save, load_checkpoint, make_checkpoint

CSV_FIELDS = [
    "epoch",
    "train/box",
    "train/obj",
    "train/cls",
    "lr/0",
    "lr/1",
    "lr/2",
    "images_per_s",
    "sparsity",
    "gamma_median",
    "gamma_below_0.01",
    "precision",
    "recall",
    "map50",
    "map50_95",
]


def fitness(m: dict) -> float:
    return 0.1 * m["map50"] + 0.9 * m["map50_95"]


class Stop:
    """SIGINT/SIGTERM set a flag; the loop saves at the next optimiser step and exits cleanly."""

    def __init__(self):
        self.signal = None
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: leave now
            raise KeyboardInterrupt
        self.signal = signum
        print(
            f"\n{signal.Signals(signum).name}: saving at the next optimiser step, then stopping "
            "(press again to abort without saving)",
            file=sys.stderr,
        )


# --------------------------------------------------------------------------- set-up
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m detect.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--data", required=True, help="data.yaml")
    p.add_argument(
        "--model",
        default=None,
        help="yolov5n/s/m/l/x, or an arch spec (.yaml/.json) or checkpoint whose architecture to build "
        "(default: the --weights architecture, else yolov5s)",
    )
    p.add_argument(
        "--weights", default="", help="initial weights (ours or official YOLOv5 .pt); '' trains from scratch"
    )
    p.add_argument("--anchors", type=Path, default=None, help="anchors.yaml from python -m analysis")
    p.add_argument(
        "--teacher",
        default=None,
        help="distil from this model (same head layout, e.g. the unpruned network); see distill_* in the hyp",
    )
    p.add_argument("--img", type=int, default=640, help="training and validation input size")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=16, help="total batch size (split across DDP processes)")
    p.add_argument("--out", type=Path, default=Path("runs/train/exp"))
    p.add_argument("--hyp", type=Path, default=DEFAULT_HYP, help="hyperparameter YAML (keys: configs/hyp/default.yaml)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override hyperparameters, e.g. sam=true")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--amp", choices=["fp16", "bf16", "off"], default="fp16", help="mixed precision on CUDA")
    p.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across DDP processes")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per training process")
    p.add_argument("--cache", choices=["none", "ram"], default="none", help="keep decoded images in memory")
    p.add_argument("--patience", type=int, default=100, help="stop after this many epochs without improvement")
    p.add_argument("--val-interval", type=int, default=1, help="validate every N epochs (and always at the end)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        help="continue the run in --out (or the given last.pt) exactly where it stopped",
    )
    args = p.parse_args(argv)
    if args.img % 32:
        new = math.ceil(args.img / 32) * 32
        print(f"warning: --img {args.img} is not a multiple of 32; using {new}", file=sys.stderr)
        args.img = new
    return args


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _init_distributed():
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return 0, 0, 1
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    return rank, local, world


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _build(args, nc: int, names: list[str]) -> tuple[YOLOv5, str]:
    """The model to train and a note of where its weights came from."""
    init = load_checkpoint(args.weights) if args.weights else None
    if args.model is None:
        arch = dict(init["arch"]) if init else default_arch("yolov5s", nc)
    elif Path(args.model).suffix in (".yaml", ".yml", ".json"):
        arch = yaml.safe_load(Path(args.model).read_text())
    elif Path(args.model).suffix == ".pt":
        arch = dict(load_checkpoint(args.model)["arch"])
    else:
        try:
            arch = default_arch(parse_model_name(args.model), nc)
        except ValueError as e:
            raise UsageError(str(e)) from None
    arch["nc"] = nc
    if args.anchors:
        arch["anchors"] = yaml.safe_load(args.anchors.read_text())["anchors"]
    model = build_model(arch)
    if init is None:
        return model, "random initialisation"
    own = model.state_dict()
    src = init["ema"] if init.get("ema") is not None else init["model"]
    fit = {
        k: v
        for k, v in src.items()
        if k in own and own[k].shape == v.shape and not (args.anchors and k.endswith("anchors"))
    }
    model.load_state_dict(fit, strict=False)
    return model, f"{len(fit)}/{len(own)} tensors from {args.weights}"


# --------------------------------------------------------------------------- training
def train(args) -> dict:
    rank, local_rank, world = _init_distributed()
    main_proc = rank == 0
    device = cli.select_device(args.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True

    out, wdir = args.out, args.out / "weights"
    resume_state = None
    if args.resume:
        last = Path(args.resume) if isinstance(args.resume, str) else wdir / "last.pt"
        if not last.is_file():
            raise UsageError(f"--resume: {last} not found; point --resume at a run's weights/last.pt")
        resume_state = load_checkpoint(last)
        tr = resume_state.get("train")
        if not tr:
            raise UsageError(
                f"--resume: {last} holds no training state (a best.pt or foreign weights); "
                "start a new run with --weights instead"
            )
        if tr["epoch"] + 1 >= tr["epochs"] and tr["iteration"] == 0:
            raise UsageError(
                f"--resume: {last} finished all {tr['epochs']} epochs; to train longer start a new run "
                f"with --weights {last}"
            )
        saved = tr["args"]
        for key in ("data", "model", "weights", "img", "epochs", "batch", "seed", "anchors", "teacher"):
            setattr(args, key, saved[key])
        args.out = out = last.parent.parent
        wdir = out / "weights"
        hyp = tr["hyp"]
    else:
        hyp = load_hyp(args.hyp, _overrides(args.set))

    _seed_all(args.seed + rank)
    cfg = load_data_config(args.data)
    train_samples, train_report = scan_split(cfg, "train", progress=main_proc)
    val_split = "val" if "val" in cfg.splits else "train"
    val_samples, _ = scan_split(cfg, val_split, progress=main_proc)
    if main_proc:
        for line in train_report.lines(3):
            print(line)
    if not train_samples:
        raise UsageError(f"{args.data}: the train split has no usable images")
    if args.batch > len(train_samples):
        raise UsageError(
            f"--batch {args.batch} is larger than the {len(train_samples)} training images; "
            f"use --batch {len(train_samples)} or less"
        )
    if args.batch % world:
        raise UsageError(f"--batch {args.batch} must be divisible by the {world} processes")

    if resume_state is not None:
        model = build_model(resume_state["arch"])
        model.load_state_dict(resume_state["model"])
        source = f"resumed from {out / 'weights' / 'last.pt'}"
    else:
        model, source = _build(args, cfg.nc, cfg.names)
    model.to(device)
    if cuda:  # NHWC on GPUs; on CPU it changed the from-scratch trajectory in tests (0.60 vs 0.98 mAP50)
        model.to(memory_format=torch.channels_last)
    batch = args.batch // world
    accumulate = max(round(hyp["nominal_batch"] / args.batch), 1)
    optimizer = build_optimizer(model, hyp, args.batch, accumulate)
    lf = lr_lambda(hyp, args.epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
    use_amp = cuda and args.amp != "off"
    amp_dtype = torch.bfloat16 if args.amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    ema = ema_model(model, hyp["ema_decay"], hyp["ema_tau"]) if main_proc else None
    start_epoch, start_iter, best_fitness = 0, 0, -1.0
    gamma_start = bn_gamma_summary(model)  # what sparsity training moves; in the checkpoints and the prune report
    if resume_state is not None:
        tr = resume_state["train"]
        optimizer.load_state_dict(tr["optimizer"])
        scheduler.load_state_dict(tr["scheduler"])
        scaler.load_state_dict(tr["scaler"])
        if ema is not None:
            ema.module.load_state_dict(resume_state["ema"])
            ema.n_averaged.fill_(tr["ema_updates"])
        start_epoch, start_iter, best_fitness = tr["epoch"], tr["iteration"], tr["best_fitness"]
        gamma_start = tr.get("gamma_start", gamma_start)
        if start_iter == 0:
            start_epoch += 1
        _restore_rng(tr["rng"])

    net = model
    if world > 1:
        if args.sync_bn and cuda:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        elif args.sync_bn and main_proc:
            print("warning: --sync-bn needs CUDA (torch's SyncBatchNorm is GPU-only); ignored on CPU", file=sys.stderr)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if cuda else None)
    criterion = YOLOLoss(model.detect, hyp, args.img)
    teacher = None
    if args.teacher:
        from detect.weights import load_model

        teacher, _ = load_model(args.teacher, device)
        if teacher.detect.m[0].out_channels != model.detect.m[0].out_channels:
            raise UsageError(f"--teacher {args.teacher} has a different head ({teacher.nc} classes) than the student")
    sam = SAM(net, hyp["sam_rho"], hyp["sam_adaptive"]) if hyp["sam"] else None

    dataset = TrainDataset(
        train_samples,
        args.img,
        hyp,
        augment_data=True,
        cache_ram=args.cache == "ram",
        seed=args.seed,
        mosaic_until=args.epochs - hyp["close_mosaic"],
    )
    weights = class_balanced_weights(train_samples, cfg.nc) if hyp["class_balanced"] else None
    sampler = EpochSampler(len(dataset), rank, world, args.seed, weights)
    loader_kw = dict(
        batch_size=batch,
        sampler=sampler,
        num_workers=args.workers,
        collate_fn=TrainDataset.collate,
        pin_memory=cuda,
        drop_last=False,
        worker_init_fn=_quiet_opencv,
    )
    if args.workers > 0:
        loader_kw.update(persistent_workers=True, prefetch_factor=2)
    loader = DataLoader(dataset, **loader_kw)  # epochs travel in the sampler's keys, so workers persist
    nb = math.ceil(len(sampler) / batch)
    warmup_iters = max(round(hyp["warmup_epochs"] * nb), 100) if hyp["warmup_epochs"] > 0 else 0

    writer = None
    if main_proc:
        wdir.mkdir(parents=True, exist_ok=True)
        if resume_state is None:
            (out / "hyp.yaml").write_text(yaml.safe_dump(hyp, sort_keys=False))
            (out / "args.yaml").write_text(yaml.safe_dump(_plain_args(args), sort_keys=False))
            with open(out / "results.csv", "w", newline="") as f:
                csv.writer(f).writerow(CSV_FIELDS)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out))
        print(
            f"model {model.arch.get('name', 'custom')} nc={cfg.nc}: {source}; {len(train_samples)} train / "
            f"{len(val_samples)} {val_split} images; batch {args.batch} x accumulate {accumulate}; "
            f"{'AMP ' + args.amp if use_amp else 'fp32'} on {device}" + (f", {world} processes" if world > 1 else "")
        )

    stop = Stop()
    metrics: dict = {}
    epochs_without_gain = 0
    for epoch in range(start_epoch, args.epochs):
        skip = start_iter if epoch == start_epoch else 0
        sampler.set_epoch(epoch, skip * batch)
        net.train()
        sparsity = hyp["sparsity"] * ((1 - epoch / args.epochs) if hyp["sparsity_schedule"] == "linear" else 1.0)
        mloss = torch.zeros(3, device=device)
        seen, t_epoch = 0, time.perf_counter()
        bar = tqdm(
            enumerate(loader, start=skip),
            total=nb,
            initial=skip,
            desc=f"epoch {epoch + 1}/{args.epochs}",
            disable=None if main_proc else True,
        )
        optimizer.zero_grad(set_to_none=True)
        for i, (images, labels) in bar:
            ni = i + nb * epoch
            if ni < warmup_iters:
                apply_warmup(optimizer, ni, warmup_iters, lf(epoch), hyp)
            x = images.to(device, non_blocking=True).float().div_(255)
            if hyp["multi_scale"]:
                x = _random_scale(x, args.img, hyp["multi_scale_range"], args.seed, epoch, i)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            targets = labels.to(device)
            if main_proc and epoch == start_epoch and i < 3 and skip == 0:
                save_batch(images, labels, cfg.names, out / f"train_batch{i}.jpg")

            def closure(x=x, targets=targets):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    preds = net(x)
                    loss, items = criterion(preds, targets)
                    if teacher is not None:
                        with torch.no_grad():
                            t_maps = teacher(x, raw=True)
                        loss = loss + distillation_loss(preds, t_maps, hyp) * len(x)
                closure.items = items
                return loss * world  # DDP averages gradients; YOLOv5's loss is a per-batch sum

            if sam is not None:
                loss = sam.micro_step(
                    closure, lambda v: scaler.scale(v).backward(), scaler.get_scale() if scaler.is_enabled() else 1.0
                )
            else:
                loss = closure()
                scaler.scale(loss).backward()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, iteration {i + 1} (global step {ni}); "
                    f"stopping. The last good checkpoint is {wdir / 'last.pt'}; lower lr0 or check the labels"
                )
            mloss = (mloss * (i - skip) + closure.items) / (i - skip + 1)
            seen += len(images) * world

            # Steps fall at fixed iterations of each epoch, so a resumed run steps where the original did.
            if (i + 1) % accumulate == 0 or i == nb - 1:
                scaler.unscale_(optimizer)
                bn_sparsity_grad(model, sparsity)  # after unscale, or the scale would swallow it
                normalize_gradients(model, hyp)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update_parameters(model)
                if _should_stop(stop, world, device):
                    if main_proc:
                        _save(
                            wdir / "last.pt",
                            model,
                            ema,
                            cfg.names,
                            optimizer,
                            scheduler,
                            scaler,
                            epoch,
                            i + 1,
                            args,
                            hyp,
                            best_fitness,
                            gamma_start,
                        )
                        print(
                            f"stopped at epoch {epoch + 1}, iteration {i + 1}; resume with "
                            f"python -m detect.train --resume {wdir / 'last.pt'}",
                            file=sys.stderr,
                        )
                    return {"stopped": True}
            if main_proc:
                mem = f"{torch.cuda.memory_reserved(device) / 2**30:.1f}G" if cuda else ""
                rate = seen / max(time.perf_counter() - t_epoch, 1e-9)
                bar.set_postfix_str(
                    f"box {mloss[0]:.3f} obj {mloss[1]:.3f} cls {mloss[2]:.3f} "
                    f"lr {optimizer.param_groups[0]['lr']:.2e} {rate:.1f} img/s {mem}"
                )
        scheduler.step()
        lrs = [g["lr"] for g in optimizer.param_groups]
        images_per_s = seen / max(time.perf_counter() - t_epoch, 1e-9)

        if main_proc:
            final = epoch == args.epochs - 1
            validated = final or (epoch + 1) % args.val_interval == 0
            if validated:
                ema_net = ema.module.eval()
                metrics, _ = run_eval(
                    lambda t, m=ema_net: m(t.to(device).float()),
                    val_samples,
                    cfg.names,
                    args.img,
                    batch_size=max(1, min(32, batch * 2)),
                    workers=min(args.workers, 2),
                    progress=False,
                )
            fit = fitness(metrics) if validated else -1.0
            improved = validated and fit > best_fitness
            if improved:
                best_fitness, epochs_without_gain = fit, 0
            elif validated:
                epochs_without_gain += args.val_interval
            shown = metrics if validated else {}
            gamma = {"start": gamma_start, "now": bn_gamma_summary(ema.module), "sparsity": hyp["sparsity"]}
            row = [
                epoch + 1,
                *mloss.tolist(),
                *lrs,
                images_per_s,
                sparsity,
                gamma["now"]["median"],
                gamma["now"]["share_below_0.01"],
                *(shown.get(k, float("nan")) for k in ("precision", "recall", "map50", "map50_95")),
            ]
            with open(out / "results.csv", "a", newline="") as f:
                csv.writer(f).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
            for k, v in zip(CSV_FIELDS[1:], row[1:]):
                if not (isinstance(v, float) and math.isnan(v)):
                    writer.add_scalar(k, v, epoch + 1)
            if hyp["sparsity"] > 0:
                gammas = torch.cat(
                    [m.weight.detach().abs().flatten() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
                )
                writer.add_histogram("bn_gamma_abs", gammas, epoch + 1)
            _save(
                wdir / "last.pt",
                model,
                ema,
                cfg.names,
                optimizer,
                scheduler,
                scaler,
                epoch,
                0,
                args,
                hyp,
                best_fitness,
                gamma_start,
            )
            if improved:
                atomic_save(
                    make_checkpoint(
                        model,
                        cfg.names,
                        ema=ema.module.state_dict(),
                        meta={"epoch": epoch + 1, "fitness": fit, **_meta(metrics), "bn_gamma": gamma},
                    ),
                    wdir / "best.pt",
                )
            if validated:
                print(
                    f"epoch {epoch + 1}: mAP50 {metrics['map50']:.4f} mAP50-95 {metrics['map50_95']:.4f} "
                    f"P {metrics['precision']:.3f} R {metrics['recall']:.3f}; {images_per_s:.1f} img/s"
                )
        if _broadcast_flag(main_proc and epochs_without_gain >= args.patience, world, device):
            if main_proc:
                print(f"early stop: no improvement in {args.patience} epochs; best is {wdir / 'best.pt'}")
            break
    if main_proc:
        writer.close()
        plot_results(out / "results.csv", out / "results.png")
        summary = {
            "best_fitness": best_fitness,
            "epochs": args.epochs,
            **_meta(metrics),
            "per_class": metrics.get("per_class"),
            "weights": {"best": str(wdir / "best.pt"), "last": str(wdir / "last.pt")},
        }
        (out / "metrics.json").write_text(json.dumps(summary, indent=2))
        print(f"done: {wdir / 'best.pt'} (fitness {best_fitness:.4f})")
        return summary
    return {}


def _meta(m: dict) -> dict:
    return {k: m[k] for k in ("map50", "map50_95", "precision", "recall") if k in m}


def _plain_args(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def _random_scale(x: torch.Tensor, img: int, span, seed: int, epoch: int, i: int) -> torch.Tensor:
    """Resize the batch to a random stride-aligned size in [span[0], span[1]] x img (normalised labels stay valid)."""
    rng = np.random.default_rng([seed, epoch, i, 7])
    lo, hi = max(32, int(img * span[0]) // 32 * 32), max(32, int(img * span[1]) // 32 * 32)
    size = int(rng.integers(lo // 32, hi // 32 + 1)) * 32
    return x if size == x.shape[-1] else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def _broadcast_flag(flag: bool, world: int, device) -> bool:
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def _should_stop(stop: Stop, world: int, device) -> bool:
    if world == 1:
        return stop.signal is not None
    t = torch.tensor([int(stop.signal is not None)], device=device)
    dist.all_reduce(t)
    return bool(t.item())


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(
    path, model, ema, names, optimizer, scheduler, scaler, epoch, iteration, args, hyp, best_fitness, gamma_start
):
    """last.pt: model, EMA and everything needed to continue exactly (epoch, iteration within it)."""
    train_state = {
        "epoch": epoch,
        "iteration": iteration,
        "epochs": args.epochs,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "ema_updates": int(ema.n_averaged),
        "best_fitness": best_fitness,
        "rng": _rng_state(),
        "args": _plain_args(args),
        "hyp": hyp,
        "gamma_start": gamma_start,
    }
    gamma = {"start": gamma_start, "now": bn_gamma_summary(ema.module), "sparsity": hyp["sparsity"]}
    atomic_save(
        make_checkpoint(
            model,
            names,
            ema=ema.module.state_dict(),
            train=train_state,
            meta={"epoch": epoch + 1 if iteration == 0 else epoch, "bn_gamma": gamma},
        ),
        path,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        train(args)
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    cli.run(main)
