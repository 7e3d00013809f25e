"""Prune a YOLOv5 by BatchNorm scale factors (network slimming), fine-tune it, and report.

    python -m prune --weights W --data D (--ratio 0.5 | --threshold T) [--min-keep 0.1] [--round-to 8] \\
        [--finetune-epochs N] [--distill] [--img 640] --out DIR

Writes DIR/pruned.pt (the fine-tuned pruned model when --finetune-epochs > 0, else the model
right after surgery; our checkpoint format with its new channel spec, so it loads in
detect.val, detect.predict, detect.train and deploy.export), DIR/pruned_untuned.pt,
DIR/report.json, DIR/report.md with gamma.png and layers.png, and DIR/finetune/ (the run).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

from detect import cli
from detect.data.config import load_data_config
from detect.data.labels import scan_split
from detect.errors import UsageError
from detect.hyp import load_hyp
from detect.model import count_gflops, count_params
from detect.optim import bn_gamma_summary
from detect.outputs import atomic_write_bytes, ensure_writable, write_json
from detect.train import FitResult, TrainConfig, fit
from detect.train.config import parse_overrides
from detect.train.engine import evaluate as evaluate_model
from detect.weights import atomic_save, build_from_checkpoint, load_checkpoint, make_checkpoint
from prune.select import looks_sparsity_trained
from prune.surgery import prunable_bn_gammas, prune


def evaluate(model, samples, names, img: int, batch: int, workers: int, device="cpu") -> dict:
    """mAP of a fused copy of ``model`` on ``device``, without autograd."""
    device = torch.device(device)
    net = copy.deepcopy(model).float().eval().fuse().to(device)
    m = evaluate_model(net, samples, names, img, batch, workers, device)
    return {"map50": m["map50"], "map50_95": m["map50_95"]}


def finetune(args, untuned: Path, epochs: int | None = None, out: Path | None = None, hooks=()) -> FitResult:
    """Recovery training of a pruned checkpoint through ``fit`` (distilled from the unpruned one with --distill)."""
    config = TrainConfig(
        data=args.data,
        out=out or args.out / "finetune",
        model=str(untuned),
        weights=str(untuned),
        teacher=str(args.weights) if args.distill else None,
        img=args.img,
        epochs=epochs or args.finetune_epochs,
        batch=args.batch,
        hyp=load_hyp(args.hyp, parse_overrides(args.set)),
        device=args.device,
        workers=args.workers,
    )
    return fit(config, hooks=hooks)


def onnx_latency(ckpt_path: Path, out: Path, shape: tuple[int, int], iters: int) -> float:
    """Median ONNX Runtime CPU latency (ms, batch 1, model only) of a checkpoint exported at ``shape``."""
    from deploy import export
    from deploy.bench import _test_image, bench_backend
    from deploy.runtime import OnnxBackend

    export.main(["--weights", str(ckpt_path), "--img", str(shape[0]), str(shape[1]), "--out", str(out)])
    backend = OnnxBackend(out / "model.onnx", torch.device("cpu"))
    r = bench_backend("ONNX Runtime FP32 CPU", backend, shape, 1, _test_image(out), warmup=10, iters=iters, cuda=False)
    return r["model"]["p50_ms"]


def calibration_batch(cfg, img: int, n: int) -> torch.Tensor | None:
    """``n`` training images spread over the split, letterboxed square to ``img``, in [0, 1]."""
    if n <= 0:
        return None
    from detect.data.dataset import EvalDataset

    samples, _ = scan_split(cfg, "train" if "train" in cfg.splits else "val", progress=False)
    picked = samples[:: max(1, len(samples) // n)][:n]
    images = [EvalDataset(picked, img, len(picked), rect=False)[i][0] for i in range(len(picked))]
    return torch.stack(images).float().div_(255)


def plots(out: Path, gammas: torch.Tensor, thr: float, layers: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(gammas.abs().numpy(), bins=80)
    ax.axvline(thr, color="r", ls="--", label=f"threshold {thr:.3g}")
    ax.set(title="BatchNorm |gamma| before pruning", xlabel="|gamma|", ylabel="channels", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "gamma.png", dpi=90)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, max(3, 0.16 * len(layers))))
    names = [x["name"] for x in layers]
    ax.barh(names, [x["total"] for x in layers], color="#ccc", label="before")
    ax.barh(names, [x["kept"] for x in layers], label="kept")
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=6)
    ax.set(title="Channels per layer", xlabel="output channels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "layers.png", dpi=90)
    plt.close(fig)


def write_markdown(out: Path, r: dict) -> None:
    f = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        "# Pruning report",
        "",
        f"weights `{r['weights']}`, data `{r['data']}`, threshold {r['threshold']:.4g} "
        f"({'ratio ' + str(r['ratio']) if r['ratio'] else 'given'}), min-keep {r['min_keep']}, round-to {r['round_to']}; "
        + (
            f"removed channels' mean activations over {r['calibration_images']} training images folded into their consumers"
            if r["calibration_images"]
            else "removed channels dropped without compensation"
        ),
        "",
        "| | before | after |",
        "| --- | --- | --- |",
        f"| parameters | {r['params_before']:,} | {r['params_after']:,} ({r['params_after'] / r['params_before']:.2f}x) |",
        f"| GFLOPs at {r['shape'][0]}x{r['shape'][1]} | {r['gflops_before']:.2f} | {r['gflops_after']:.2f} "
        f"({r['gflops_after'] / r['gflops_before']:.2f}x) |",
    ]
    st = r.get("sparsity_training")
    if st:
        a, b = st["start"], st["end"]
        lines[3:3] = [
            f"Sparsity training (L1 strength {st['strength']:g}) moved BatchNorm |gamma| toward zero: median "
            f"{a['median']:.3f} -> {b['median']:.3f}, 10th percentile {a['p10']:.3f} -> {b['p10']:.3f}, "
            f"share below 0.01 {a['share_below_0.01']:.0%} -> {b['share_below_0.01']:.0%}.",
            "",
        ]
    elif not r["sparsity_trained"]:
        lines[3:3] = [
            f"Not sparsity-trained: {r['gamma']['share_below_0.01']:.0%} of |gamma| below 0.01 "
            f"(median {r['gamma']['median']:.3f}); expect a large drop before fine-tuning.",
            "",
        ]
    if r.get("onnx_latency_ms"):
        lat = r["onnx_latency_ms"]
        lines.append(
            f"| ONNX Runtime CPU p50 ms | {lat['before']:.1f} | {lat['after']:.1f} ({lat['after'] / lat['before']:.2f}x) |"
        )
    lines += [
        "",
        "| mAP | before | right after pruning | after fine-tuning |",
        "| --- | --- | --- | --- |",
        f"| mAP50 | {f(r['map50_before'])} | {f(r['map50_pruned'])} | {f(r['map50_finetuned'])} |",
        f"| mAP50-95 | {f(r['map50_95_before'])} | {f(r['map50_95_pruned'])} | {f(r['map50_95_finetuned'])} |",
        "",
        "![gamma](gamma.png)",
        "",
        "![layers](layers.png)",
        "",
        "| layer | kept | total |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {x['name']} | {x['kept']} | {x['total']} |" for x in r["layers"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _sparsity_history(ckpt: dict) -> dict | None:
    """The |gamma| summary the trainer stored before and after a sparsity run (None if it was not one)."""
    g = (ckpt.get("meta") or {}).get("bn_gamma")
    if not g or not g.get("sparsity"):
        return None
    return {"strength": g["sparsity"], "start": g["start"], "end": g["now"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m prune",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--weights", required=True, type=Path, help="a (preferably sparsity-trained) checkpoint")
    p.add_argument("--data", required=True, help="data.yaml (validation before/after; fine-tuning)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--ratio", type=float, help="share of prunable channels to remove, in (0, 1)")
    g.add_argument("--threshold", type=float, help="remove channels whose |gamma| is at or below this")
    p.add_argument("--min-keep", type=float, default=0.1, help="never keep fewer than this share of a layer")
    p.add_argument("--round-to", type=int, default=8, help="round kept channels up to a multiple (1 = off)")
    p.add_argument(
        "--calib-images",
        type=int,
        default=32,
        help="training images whose mean activations of removed channels are folded into their consumers (0 = off)",
    )
    p.add_argument("--finetune-epochs", type=int, default=0)
    p.add_argument("--distill", action="store_true", help="fine-tune with the unpruned model as teacher")
    p.add_argument("--img", type=int, default=640, help="validation and fine-tuning input size")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--hyp", help="hyperparameter file for fine-tuning (default: the trainer's)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hyperparameters for fine-tuning")
    p.add_argument(
        "--report-shape",
        type=int,
        nargs=2,
        default=[384, 640],
        metavar=("H", "W"),
        help="input shape for GFLOPs and latency",
    )
    p.add_argument("--latency-iters", type=int, default=50, help="ONNX Runtime timing iterations (0 = skip)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.ratio is not None and not 0 < args.ratio < 1:
        raise UsageError(f"--ratio must be in (0, 1), got {args.ratio}")
    if not 0 <= args.min_keep <= 1:
        raise UsageError(f"--min-keep must be in [0, 1], got {args.min_keep}")
    cli.check_img(args.img)
    cli.check_img(*args.report_shape, flag="--report-shape")
    cli.check_range("--batch", args.batch, 1)
    cli.check_range("--finetune-epochs", args.finetune_epochs, 0)
    cli.check_range("--calib-images", args.calib_images, 0)
    cli.check_range("--round-to", args.round_to, 1)
    device = cli.select_device(args.device)
    ensure_writable(args.out)
    cfg = load_data_config(args.data)
    ckpt = load_checkpoint(args.weights)
    if len(ckpt["names"]) != cfg.nc:
        raise UsageError(
            f"{args.weights} has {len(ckpt['names'])} classes but {args.data} has {cfg.nc}; prune a model "
            "trained on this data"
        )
    model = build_from_checkpoint(ckpt, args.weights).float().eval()
    samples, _ = scan_split(cfg, "val" if "val" in cfg.splits else "train", progress=False)
    args.out.mkdir(parents=True, exist_ok=True)
    gammas = prunable_bn_gammas(model)
    gsum = bn_gamma_summary(gammas)
    if not looks_sparsity_trained(gsum):
        print(
            f"warning: {args.weights} does not look sparsity-trained: only {gsum['share_below_0.01']:.0%} of BatchNorm "
            f"|gamma| are below 0.01 (median {gsum['median']:.3f}, 10th percentile {gsum['p10']:.3f}); pruning proceeds, "
            "but expect a larger drop before fine-tuning (train with --set sparsity=... first: make train-sparse)",
            file=sys.stderr,
        )
    shape = tuple(args.report_shape)
    before = evaluate(model, samples, cfg.names, args.img, args.batch, args.workers, device)
    params_before, gflops_before = count_params(model), count_gflops(model, shape)

    calib = calibration_batch(cfg, args.img, args.calib_images)
    pruned, plans, thr = prune(
        copy.deepcopy(model), args.ratio, args.threshold, args.min_keep, args.round_to, calib=calib
    )
    for plan in plans:
        if plan.clamped:
            print(
                f"warning: {plan.name}: the threshold would keep fewer than --min-keep {args.min_keep:g} of its "
                f"{plan.total} channels; kept {len(plan.keep)}",
                file=sys.stderr,
            )
    layers = [{"name": pl.name, "kept": len(pl.keep), "total": pl.total} for pl in plans]
    info = {"source": str(args.weights), "threshold": thr, "ratio": args.ratio}
    untuned = args.out / "pruned_untuned.pt"
    atomic_save(make_checkpoint(pruned, ckpt["names"], meta={"pruned": info}), untuned)
    after = evaluate(pruned, samples, cfg.names, args.img, args.batch, args.workers, device)
    print(
        f"pruned: {params_before:,} -> {count_params(pruned):,} parameters; mAP50-95 {before['map50_95']:.4f} -> "
        f"{after['map50_95']:.4f} before fine-tuning"
    )

    tuned = {"map50": None, "map50_95": None}
    final = untuned
    if args.finetune_epochs > 0:
        result = finetune(args, untuned)
        if result.stopped:
            return 128 + result.stopped
        tuned = {"map50": result.summary["map50"], "map50_95": result.summary["map50_95"]}
        final = result.best
    atomic_write_bytes(Path(final).read_bytes(), args.out / "pruned.pt")

    report = {
        "weights": str(args.weights),
        "data": str(args.data),
        "ratio": args.ratio,
        "threshold": thr,
        "min_keep": args.min_keep,
        "round_to": args.round_to,
        "calibration_images": 0 if calib is None else len(calib),
        "shape": list(shape),
        "params_before": params_before,
        "params_after": count_params(pruned),
        "gflops_before": gflops_before,
        "gflops_after": count_gflops(pruned, shape),
        "map50_before": before["map50"],
        "map50_pruned": after["map50"],
        "map50_finetuned": tuned["map50"],
        "map50_95_before": before["map50_95"],
        "map50_95_pruned": after["map50_95"],
        "map50_95_finetuned": tuned["map50_95"],
        "finetune_epochs": args.finetune_epochs,
        "distill": args.distill,
        "gamma": gsum,
        "sparsity_trained": looks_sparsity_trained(gsum),
        "sparsity_training": _sparsity_history(ckpt),
        "layers": layers,
    }
    if args.latency_iters > 0:
        report["onnx_latency_ms"] = {
            "before": onnx_latency(args.weights, args.out / "onnx_before", shape, args.latency_iters),
            "after": onnx_latency(args.out / "pruned.pt", args.out / "onnx_after", shape, args.latency_iters),
        }
    plots(args.out, gammas, thr, layers)
    write_json(report, args.out / "report.json")
    write_markdown(args.out, report)
    print(
        f"GFLOPs at {shape[0]}x{shape[1]}: {report['gflops_before']:.2f} -> {report['gflops_after']:.2f}; "
        f"report: {args.out / 'report.md'}"
    )
    return 0


if __name__ == "__main__":
    cli.run(main)
