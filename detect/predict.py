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
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from detect import cli
from detect.boxes import Letterbox, non_max_suppression, prepare_image
from detect.data.config import IMAGE_SUFFIXES, DataError
from detect.data.dataset import load_image, to_tensor


def collect_sources(source: str) -> list[Path]:
    p = Path(source)
    if p.is_dir():
        files = sorted(q for q in p.rglob("*") if q.suffix.lower() in IMAGE_SUFFIXES)
    elif p.is_file():
        files = [p]
    else:
        files = sorted(Path(q) for q in glob.glob(source, recursive=True) if Path(q).suffix.lower() in IMAGE_SUFFIXES)
        if not files and not any(c in source for c in "*?["):
            raise DataError(f"{source}: no such file or folder")
    if not files:
        raise DataError(f"{source}: no images found ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


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


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.img % 32:
        raise cli.UsageError(f"--img {args.img} is not a multiple of 32 (the network's largest stride)")
    files = collect_sources(args.source)
    device = cli.select_device(args.device)
    from detect.backend import load_backend

    backend = load_backend(args.weights, device, args.half)
    (args.out / "labels").mkdir(parents=True, exist_ok=True)
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
        (args.out / "labels" / f"{f.stem}.txt").write_text("".join(s + "\n" for s in yolo_lines(det, h, w)))
        if args.save_images:
            cv2.imwrite(str(args.out / f.name), draw(img, det, backend.names))
        for x1, y1, x2, y2, score, cls in det.tolist():
            results.append(
                {"file_name": f.name, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    print(f"{len(results)} detections in {len(files) - len(failed)} images -> {args.out}")
    for msg in failed:
        print(f"skipped: {msg}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed and len(failed) == len(files) else 0


if __name__ == "__main__":
    cli.run(main)
