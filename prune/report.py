"""The pruning report: report.md with the gamma histogram, channels per layer, and each step."""

from __future__ import annotations

from pathlib import Path

import torch


def plots(out: Path, gammas: torch.Tensor, thr: float, layers: list[dict]) -> None:
    import matplotlib  # lazy: plots only

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
        f"weights `{r['weights']}`, data `{r['data']}`, strategy {r['strategy']}, "
        + (f"ratio {r['ratio']} in {len(r['steps'])} step(s)" if r["ratio"] else
           f"{'at most ' * bool(r.get('gflops_at_most'))}{r['gflops_target']}x GFLOPs in {len(r['steps'])} step(s)"
           if r.get("gflops_target") else
           f"threshold {r['threshold']:.4g}")
        + f", min-keep {r['min_keep']}, round-to {r['round_to']}; "
        + (
            (f"every layer refit by least squares to the unpruned outputs on {r['calibration_images']} training images"
             if r.get("compensation") == "reconstruct" else
             f"removed channels' mean activations over {r['calibration_images']} training images folded into their "
             "consumers")
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
    for key, label in (("onnx_latency_ms", "ONNX Runtime CPU p50 ms"),
                       ("onnx_latency_ms_single_thread", "the same, one thread")):
        if r.get(key):
            lat = r[key]
            lines.append(f"| {label} | {lat['before']:.1f} | {lat['after']:.1f} ({lat['after'] / lat['before']:.2f}x) |")
    lines += [
        "",
        "| mAP | before | right after pruning | after fine-tuning |",
        "| --- | --- | --- | --- |",
        f"| mAP50 | {f(r['map50_before'])} | {f(r['map50_pruned'])} | {f(r['map50_finetuned'])} |",
        f"| mAP50-95 | {f(r['map50_95_before'])} | {f(r['map50_95_pruned'])} | {f(r['map50_95_finetuned'])} |",
        "",
        *([r["kept"] + ".", ""] if r.get("kept") else []),
        *([f"{r['finetune_collapsed']}: fine-tuned again from the surgery's model with {r['finetune_hyp_used']}.", ""]
          if r.get("finetune_collapsed") else []),
        *_steps_table(r),
        "![gamma](gamma.png)",
        "",
        "![layers](layers.png)",
        "",
        "| layer | kept | total |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {x['name']} | {x['kept']} | {x['total']} |" for x in r["layers"]]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _steps_table(r: dict) -> list[str]:
    if len(r["steps"]) <= 1 and not r.get("stopped"):
        return []
    lines = ["| step | channels removed so far | GFLOPs | mAP50-95 after pruning | after recovery |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {s['step']} | {s['share']:.3f} | {s['gflops_ratio']:.2f}x | {s['map50_95_pruned']:.4f} | "
              f"{s['map50_95_recovered']:.4f} |" for s in r["steps"]]
    if r.get("stopped"):
        lines += ["", f"Stopped early: {r['stopped']}."]
    return lines + [""]
