"""The validation report's figures: one PNG each, readable at a glance."""

from __future__ import annotations

from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from detect.metrics import CONF_GRID  # noqa: E402

MAX_CURVES = 20  # classes drawn individually on the curves; the rest only enter the mean


def _save(fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=90)
    plt.close(fig)
    return name


def confusion(matrix: np.ndarray, names: list[str], out: Path) -> str:
    """Column-normalised (each true class sums to 1) with the background row and column."""
    labels = [*names, "background"]
    norm = matrix / np.maximum(matrix.sum(0, keepdims=True), 1)
    n = len(labels)
    size = min(4 + 0.35 * n, 24)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        for i, j in zip(*np.nonzero(matrix)):
            ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("true class")
    ax.set_ylabel("predicted class")
    ax.set_title("Confusion matrix (columns sum to 1; background = missed / false)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out, "confusion_matrix.png")


def curves(curves: dict, names: list[str], instances: np.ndarray, out: Path) -> list[str]:
    """PR (precision vs recall) and F1 vs confidence per class, with the mean over classes."""
    valid = np.flatnonzero(instances > 0)
    drawn = valid[np.argsort(-instances[valid], kind="stable")][:MAX_CURVES]
    files = []
    for kind in ("pr", "f1"):
        fig, ax = plt.subplots(figsize=(7, 5))
        for c in drawn:
            x, y = (curves["recall"][c], curves["precision"][c]) if kind == "pr" else (CONF_GRID, curves["f1"][c])
            ax.plot(x, y, lw=1, alpha=0.7, label=names[c])
        mean_x = curves["recall"][valid].mean(0) if kind == "pr" else CONF_GRID
        mean_y = curves["precision"][valid].mean(0) if kind == "pr" else curves["f1"][valid].mean(0)
        ax.plot(mean_x, mean_y, "k", lw=3, label="all classes")
        ax.set_xlabel("recall" if kind == "pr" else "confidence")
        ax.set_ylabel("precision" if kind == "pr" else "F1")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_title("Precision-recall at IoU 0.5" if kind == "pr" else f"F1 (best mean at conf {curves['global_conf']:.3f})")
        ax.legend(fontsize=6, ncol=2, loc="lower left" if kind == "pr" else "upper right")
        files.append(_save(fig, out, f"{kind}_curve.png"))
    return files


def bars(labels: list[str], values: list[float | None], title: str, out: Path, name: str) -> str:
    fig, ax = plt.subplots(figsize=(min(3 + 0.3 * len(labels), 20), 4))
    ax.bar(range(len(labels)), [v or 0 for v in values], color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=90 if len(labels) > 6 else 0, fontsize=8)
    ax.set_ylabel("mAP50-95")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return _save(fig, out, name)


def gallery_image(img: np.ndarray, gt: list[tuple], dets: list[tuple], names: list[str], path: Path, width: int = 900):
    """Draw one image's errors: missed objects orange, false boxes red (named, with the true class
    of a confusion), correct boxes thin green. ``gt``/``dets``: (xyxy, class, kind[, score])."""
    scale = min(1.0, width / img.shape[1])
    out = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else img.copy()
    colours = {"missed": (0, 140, 255), "false": (0, 0, 255), "ok": (0, 170, 0)}
    for box, cls, kind, *rest in [*gt, *dets]:
        p1 = (int(box[0] * scale), int(box[1] * scale))
        p2 = (int(box[2] * scale), int(box[3] * scale))
        cv2.rectangle(out, p1, p2, colours[kind], 1 if kind == "ok" else 2, cv2.LINE_AA)
        if kind != "ok":
            label = names[cls] + (f" {rest[0]:.2f}" if rest and rest[0] is not None else "")
            label += f" (is {names[rest[1]]})" if len(rest) > 1 and rest[1] is not None else ""
            cv2.putText(out, label, (p1[0], max(p1[1] - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colours[kind], 1,
                        cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if ok:
        path.write_bytes(buf.tobytes())
