"""Channels-last and bf16 autocast on the CPU: are they correct, and are they faster?

    python benchmarks/cpu_formats.py [--img 320] [--batch 16] [--steps 30] [--json OUT]

1. Numerics: one forward/backward of yolov5n (the shared weights, else random) on a real batch,
   fp32 NCHW and fp32 NHWC each against an fp64 NCHW reference: relative error of the loss
   and of every gradient; how many convolutions receive an input that lost the NHWC format;
   and training-mode BatchNorm alone on inputs whose mean is 0/10/100/1000x their spread.
2. Trajectory: ``--steps`` SGD steps on that fixed batch from identical weights in both formats;
   the weight distance after each step shows whether a tiny per-step difference is amplified
   (chaotic training dynamics) or starts large (a bug).
3. Speed, interleaved: a training step (forward + backward) and batch-1 inference in fp32 NCHW,
   fp32 NHWC and bf16 autocast (where the CPU has AVX512-BF16 or AMX), medians of ``--repeats``.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
from detect.hyp import load_hyp  # noqa: E402
from detect.loss import YOLOLoss  # noqa: E402
from detect.machine import cpu_flags, cpu_model  # noqa: E402
from detect.model import build_model, default_arch  # noqa: E402
from detect.paths import shared_dir  # noqa: E402
from detect.weights import build_from_checkpoint, load_checkpoint  # noqa: E402


def load(nc_weights: Path | None):
    if nc_weights and nc_weights.is_file():
        return build_from_checkpoint(load_checkpoint(nc_weights), nc_weights).float()
    torch.manual_seed(0)
    return build_model(default_arch("yolov5n", 80))


def real_batch(img: int, batch: int):
    """A batch of coco128 training images and labels through the training dataset (no augmentation)."""
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from detect.data.train_dataset import TrainDataset

    cfg = load_data_config(shared_dir() / "datasets/coco128/data.yaml")
    samples, _ = scan_split(cfg, "train", progress=False)
    hyp = load_hyp(None, {"mosaic": 0.0})
    ds = TrainDataset(samples[:batch], img, hyp, augment_data=False)
    images, labels = TrainDataset.collate([ds[(i, 0)] for i in range(batch)])
    return images.float() / 255, labels


def loss_and_grads(model, x, labels, fmt):
    model = copy.deepcopy(model).train().to(memory_format=fmt)
    lost = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: lost.append(not inp[0].is_contiguous(memory_format=fmt)))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    loss, _ = YOLOLoss(model.detect, load_hyp(), x.shape[-1])(model(x.contiguous(memory_format=fmt)), labels)
    loss.backward()
    for h in hooks:
        h.remove()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}, sum(lost), model


def fp64_errors(model, x, labels) -> dict:
    """Loss and gradient error of fp32 NCHW and fp32 NHWC against fp64 NCHW."""

    def run(dtype, fmt):
        m = copy.deepcopy(model).to(dtype).train().to(memory_format=fmt)
        loss, _ = YOLOLoss(m.detect, load_hyp(), x.shape[-1])(m(x.to(dtype).contiguous(memory_format=fmt)),
                                                              labels.to(dtype))
        loss.backward()
        return loss.item(), {n: p.grad.double() for n, p in m.named_parameters()}

    l64, g64 = run(torch.float64, torch.contiguous_format)
    out = {}
    for name, fmt in (("fp32 NCHW", torch.contiguous_format), ("fp32 NHWC", torch.channels_last)):
        loss, g = run(torch.float32, fmt)
        rel = [float((g[n] - g64[n]).norm() / (g64[n].norm() + 1e-30)) for n in g64]
        out[name] = {"loss_rel": abs(loss - l64) / abs(l64), "grad_rel_median": statistics.median(rel),
                     "grad_rel_max": max(rel)}
    return out


def batchnorm_precision() -> dict:
    """Training-mode BatchNorm2d output error vs fp64 by input mean/std ratio, NCHW and NHWC."""
    torch.manual_seed(0)
    out = {}
    for ratio in (0, 10, 100, 1000):
        x = torch.randn(16, 16, 80, 80) + ratio
        bn = torch.nn.BatchNorm2d(16).train()
        ref = copy.deepcopy(bn).double()(x.double())
        out[str(ratio)] = {name: float((copy.deepcopy(bn)(x.contiguous(memory_format=fmt)).double() - ref).norm()
                                       / ref.norm())
                           for name, fmt in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last))}
    return out


def trajectory(model, x, labels, steps: int) -> list[float]:
    runs = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        torch.manual_seed(0)
        m = copy.deepcopy(model).train().to(memory_format=fmt)
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        crit, snaps = YOLOLoss(m.detect, load_hyp(), x.shape[-1]), []
        for _ in range(steps):
            opt.zero_grad()
            crit(m(x.contiguous(memory_format=fmt)), labels)[0].backward()
            opt.step()
            snaps.append(torch.cat([p.detach().flatten() for p in m.parameters()]))
        runs.append(snaps)
    return [float((a - b).norm() / a.norm()) for a, b in zip(*runs)]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def speed(model, x, labels, repeats: int, bf16: bool) -> dict:
    variants = {"fp32 NCHW": (torch.contiguous_format, None), "fp32 NHWC": (torch.channels_last, None)}
    if bf16:
        variants["bf16 autocast NCHW"] = (torch.contiguous_format, torch.bfloat16)
        variants["bf16 autocast NHWC"] = (torch.channels_last, torch.bfloat16)
    models = {k: copy.deepcopy(model).to(memory_format=f) for k, (f, _) in variants.items()}
    crit = YOLOLoss(model.detect, load_hyp(), x.shape[-1])
    out = {k: {"train_ms": [], "infer_ms": []} for k in variants}
    for _ in range(repeats):  # interleaved: every variant once per round
        for k, (fmt, dtype) in variants.items():
            m, xi = models[k], x.contiguous(memory_format=fmt)

            def train_step(m=m, xi=xi, dtype=dtype):
                m.train()
                m.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = crit(m(xi), labels)[0]
                loss.backward()

            def infer(m=m, xi=xi[:1], dtype=dtype):
                m.eval()
                with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                    m(xi)

            out[k]["train_ms"].append(timed(train_step, 1))
            out[k]["infer_ms"].append(timed(infer, 3))
    return {k: {n: statistics.median(v) for n, v in d.items()} for k, d in out.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--img", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.manual_seed(0)
    model = load(shared_dir() / "weights/yolov5n.pt")
    x, labels = real_batch(args.img, args.batch)
    l1, g1, _, _ = loss_and_grads(model, x, labels, torch.contiguous_format)
    l2, g2, lost, _ = loss_and_grads(model, x, labels, torch.channels_last)
    rel = {n: float((g1[n] - g2[n]).norm() / (g1[n].norm() + 1e-12)) for n in g1}
    worst = max(rel, key=rel.get)
    drift = trajectory(model, x, labels, args.steps)
    flags = cpu_flags()
    bf16 = bool(flags & {"avx512_bf16", "amx_bf16"})
    result = {
        "cpu": cpu_model(),
        "bf16_hardware": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"}),
        "loss_rel_diff": abs(l1 - l2) / abs(l1),
        "grad_rel_diff_median": statistics.median(rel.values()),
        "grad_rel_diff_max": rel[worst],
        "grad_rel_diff_worst_tensor": worst,
        "convs_receiving_non_channels_last_input": lost,
        "vs_fp64": fp64_errors(model, x, labels),
        "batchnorm_train_rel_error_by_mean_over_std": batchnorm_precision(),
        "weight_rel_distance_by_step": drift,
        "speed_ms": speed(model, x, labels, args.repeats, bf16),
        "img": args.img,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
