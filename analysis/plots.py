"""One PNG per statistic: titled, labelled, readable at a glance. Returns the file names."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis.stats import input_scale  # noqa: E402


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def class_distribution(summary: dict, out: Path) -> str:
    splits = summary["splits"]
    names = list(next(iter(splits.values()))["per_class"])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 4))
    width = 0.8 / len(splits)
    for i, (split, s) in enumerate(splits.items()):
        ax.bar(np.arange(len(names)) + i * width, [s["per_class"][n] for n in names], width, label=split)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=60, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set(title=f"Boxes per class (head: {summary['classes']['head_share']:.0%})", ylabel="boxes (log)")
    ax.legend()
    return _save(fig, out, "classes.png")


def image_sizes(summary: dict, out: Path) -> str:
    sizes = summary["image_sizes"]["sizes"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.barh([f"{s['width']}x{s['height']}" for s in sizes][::-1], [s["share"] for s in sizes][::-1])
    ax.set(title="Image sizes (share of images)", xlabel="share")
    return _save(fig, out, "image_sizes.png")


def density(images, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(images["boxes"], bins=min(50, max(5, int(images["boxes"].max()) + 1)))
    ax.set(title="Objects per image", xlabel="boxes in the image", ylabel="images")
    return _save(fig, out, "density.png")


def box_sizes(images, boxes, img: int, out: Path) -> str:
    s = np.sqrt(boxes["w_px"] * boxes["h_px"]).to_numpy() * input_scale(images, boxes, img)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(np.clip(s, 1, None), bins=np.logspace(0, np.log10(max(s.max(), 2)), 40))
    ax.set_xscale("log")
    for edge, label in ((32, "small|medium"), (96, "medium|large")):
        ax.axvline(edge, color="r", ls="--")
        ax.text(edge, ax.get_ylim()[1] * 0.9, f" {label}", color="r", fontsize=8)
    ax.set(title=f"Box size at input {img} (sqrt area)", xlabel="pixels", ylabel="boxes")
    return _save(fig, out, "box_sizes.png")


def aspect_ratios(boxes, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ar = (boxes["w_px"] / boxes["h_px"].clip(lower=1e-9)).clip(0.05, 20)
    ax.hist(ar, bins=np.logspace(np.log10(0.05), np.log10(20), 40))
    ax.set_xscale("log")
    ax.set(title="Box aspect ratio (width / height)", xlabel="w / h", ylabel="boxes")
    return _save(fig, out, "aspect_ratios.png")


def centres(heat: np.ndarray, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 4))
    im = ax.imshow(heat, extent=(0, 1, 1, 0), cmap="viridis")
    fig.colorbar(im, ax=ax, label="boxes")
    ax.set(title="Box centres", xlabel="x / width", ylabel="y / height")
    return _save(fig, out, "centres.png")


def occlusion(per_image_pairs: list[int], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(per_image_pairs, bins=30)
    ax.set(title="Overlapping box pairs per image (IoU > 0)", xlabel="pairs", ylabel="images")
    return _save(fig, out, "occlusion.png")


def scenes(summary: dict, out: Path) -> list[str]:
    sc = summary["scenes"]
    fig, ax = plt.subplots(figsize=(6, max(3, 0.3 * len(sc["images"]))))
    keys = list(sc["images"])[::-1]
    ax.barh(keys, [sc["images"][k] for k in keys])
    ax.set(title=f"Images per {sc['column']}", xlabel="images")
    files = [_save(fig, out, "scenes.png")]
    classes = list(summary["classes"]["counts"])
    table = np.array([[sc["class_by_scene"].get(s, {}).get(c, 0) for c in classes] for s in sc["images"]])
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(classes)), max(3, 0.35 * len(sc["images"]))))
    im = ax.imshow(np.log1p(table), aspect="auto", cmap="magma")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(sc["images"])), list(sc["images"]), fontsize=7)
    fig.colorbar(im, ax=ax, label="log(1 + boxes)")
    ax.set(title=f"Boxes: class x {sc['column']}")
    files.append(_save(fig, out, "class_by_scene.png"))
    return files


def anchors(wh: np.ndarray, report: dict, out: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 5))
    sample = wh[np.random.default_rng(0).choice(len(wh), min(len(wh), 5000), replace=False)] if len(wh) else wh
    ax.scatter(sample[:, 0], sample[:, 1], s=2, alpha=0.3, label="boxes")
    d = np.array(report["default"]["anchors"])
    ax.scatter(d[:, 0], d[:, 1], marker="x", s=60, c="k", label=f"default (BPR {report['default']['bpr']:.3f})")
    if "fitted" in report:
        f = np.array(report["fitted"]["anchors"])
        ax.scatter(f[:, 0], f[:, 1], marker="*", s=90, c="r", label=f"fitted (BPR {report['fitted']['bpr']:.3f})")
    ax.set(
        xscale="log",
        yscale="log",
        title=f"Anchors vs boxes at input {report['input_size']}",
        xlabel="width px",
        ylabel="height px",
    )
    ax.legend(fontsize=8)
    return _save(fig, out, "anchors.png")
