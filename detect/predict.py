"""Run a detector on images: annotated copies, YOLO txt per image, and COCO-style JSON.

    python -m detect.predict --weights W --source FILE|DIR|GLOB --img 640 --conf 0.25 \\
        --iou 0.45 --out DIR [--json OUT] [--save-images]

Each image gets the smallest stride-aligned rectangle that holds it (1080x1920 -> 384x640
at img 640); boxes are mapped back to original pixels exactly.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from detect import cli
from detect.boxes import Letterbox, non_max_suppression, prepare_image
from detect.data.config import IMAGE_SUFFIXES, DataError, walk_images
from detect.data.dataset import load_image, to_tensor
from detect.data.images import safe_name
from detect.outputs import atomic_write_bytes, atomic_write_text, ensure_writable


def collect_sources(source: str) -> tuple[list[Path], Path | None]:
    """The images of ``source`` (a file, a folder walked recursively, or a glob) and the root their
    output names are relative to (None for a single file)."""
    p = Path(source)
    if p.is_dir():
        files, root = walk_images(p), p
    elif p.is_file():
        files, root = [p], None
    else:
        files = sorted(Path(q) for q in glob.glob(source, recursive=True) if Path(q).suffix.lower() in IMAGE_SUFFIXES)
        if not files and not any(c in source for c in "*?["):
            raise DataError(f"{source}: no such file or folder")
        root = Path(os.path.commonpath([f.parent for f in files])) if files else None
    if not files:
        raise DataError(f"{source}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files, root


def output_names(files: list[Path], root: Path | None) -> dict[Path, Path]:
    """Each image's name relative to ``root``, unique by construction: sub-folders are kept, and the
    suffix too where two images of one folder share a stem (``img.jpg`` and ``img.png``)."""
    rel = {f: (f.relative_to(root) if root is not None else Path(f.name)) for f in files}
    stems = Counter(r.with_suffix("") for r in rel.values())
    return {f: (r if stems[r.with_suffix("")] > 1 else r.with_suffix("")) for f, r in rel.items()}


def detect_image(
    backend,
    img: np.ndarray,
    img_size: int,
    conf: float,
    iou: float,
    max_det: int = 1000,
    classes=None,
    agnostic: bool = False,
) -> tuple[torch.Tensor, Letterbox]:
    """One BGR image -> (n, 6) x1, y1, x2, y2, score, class in original pixels."""
    net, lb = prepare_image(img, img_size, backend.stride, shape=backend.fixed_shape)
    x = to_tensor(net)[None].float().div_(255)
    det = non_max_suppression(backend(x), conf, iou, classes, agnostic, max_det=max_det)[0].cpu()
    det[:, :4] = lb.to_original(det[:, :4])
    return det, lb


def draw(img: np.ndarray, det: torch.Tensor, names: list[str]) -> np.ndarray:
    out = img.copy()
    thick = max(1, round(sum(img.shape[:2]) / 1000))
    for x1, y1, x2, y2, score, cls in det.tolist():
        c = int(cls)
        colour = tuple(int(v) for v in np.random.default_rng(c).integers(40, 255, 3))
        p1, p2 = (int(x1), int(y1)), (int(x2), int(y2))
        cv2.rectangle(out, p1, p2, colour, thick, cv2.LINE_AA)
        label = f"{names[c] if c < len(names) else c} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, thick / 3, max(1, thick - 1))
        top = p1[1] - th - 3 if p1[1] - th - 3 >= 0 else p1[1] + th + 3
        cv2.rectangle(out, (p1[0], top), (p1[0] + tw, p1[1]), colour, -1, cv2.LINE_AA)
        cv2.putText(
            out,
            label,
            (p1[0], max(top + th, th)),
            cv2.FONT_HERSHEY_SIMPLEX,
            thick / 3,
            (255, 255, 255),
            max(1, thick - 1),
            cv2.LINE_AA,
        )
    return out


def yolo_lines(det: torch.Tensor, h: int, w: int) -> list[str]:
    """``class cx cy w h score`` normalised, one line per detection (YOLOv5 --save-txt --save-conf)."""
    lines = []
    for x1, y1, x2, y2, score, cls in det.tolist():
        lines.append(
            f"{int(cls)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
            f"{(y2 - y1) / h:.6f} {score:.5f}"
        )
    return lines


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m detect.predict",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--weights", required=True, help="our .pt checkpoint or an official YOLOv5 .pt")
    p.add_argument("--source", required=True, help="an image, a folder or a glob pattern (quote it)")
    p.add_argument("--img", type=int, default=640, help="long side of the network input, pixels")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=int, default=1000)
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", help="NMS across classes")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--half", action="store_true", help="FP16 inference (CUDA only)")
    p.add_argument("--out", type=Path, default=Path("runs/predict/exp"), help="labels/ and images go here")
    p.add_argument("--json", type=Path, default=None, help="COCO-style detections list")
    p.add_argument("--save-images", action="store_true", help="write annotated images")
    return p.parse_args(argv)


def check_args(args) -> None:
    """Out-of-range numbers are one line and exit 2, before any model is loaded."""
    cli.check_img(args.img)
    cli.check_range("--conf", args.conf, 0, 1)
    cli.check_range("--iou", args.iou, 0, 1, low_open=True)
    cli.check_range("--max-det", args.max_det, 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    files, root = collect_sources(args.source)
    ensure_writable(args.out / "labels")
    if args.json:
        ensure_writable(args.json.parent)
    device = cli.select_device(args.device)
    from detect.backend import check_input_size, load_backend

    backend = load_backend(args.weights, device, args.half)
    check_input_size(backend, args.img, args.weights)
    names = output_names(files, root)
    results, failed = [], []
    for f in tqdm(files, desc="predict", unit="img", disable=None):
        try:
            img = load_image(f)
        except OSError as e:
            failed.append(str(e))
            continue
        det, lb = detect_image(
            backend, img, args.img, args.conf, args.iou, args.max_det, args.classes, args.agnostic_nms
        )
        h, w = img.shape[:2]
        name = names[f]
        label = args.out / "labels" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text("".join(s + "\n" for s in yolo_lines(det, h, w)), label)
        if args.save_images:
            save_annotated(draw(img, det, backend.names), args.out / (name if name.suffix else name.with_suffix(f.suffix)))
        file_name = safe_name(f.relative_to(root) if root is not None else f.name)
        for x1, y1, x2, y2, score, cls in det.tolist():
            results.append(
                {"file_name": file_name, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    print(f"{len(results)} detections in {len(files) - len(failed)} images -> {safe_name(args.out)}")
    for msg in failed:
        print(f"skipped: {msg}")
    if args.json:
        atomic_write_text(json.dumps(results, indent=1), args.json)
    return 1 if failed and len(failed) == len(files) else 0


def save_annotated(img: np.ndarray, path: Path) -> None:
    """cv2.imencode + our atomic write: any file name, the suffix's format (jpg when it has none)."""
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".jpg", img)
    if ok:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(buf.tobytes(), path)


if __name__ == "__main__":
    cli.run(main)
