"""Run a detector on images: annotated copies, YOLO txt per image, and COCO-style JSON.

    python -m detect.predict --weights W [W2 ...] --source FILE|DIR|GLOB --img 640 [800] --conf 0.25 \\
        --iou 0.45 --out DIR [--json OUT] [--submission FILE.csv|FILE.json] [--save-images] \\
        [--augment] [--slice WxH --slice-overlap 0.2] [--fuse wbf|nms]

Each image gets the smallest stride-aligned rectangle that holds it (1080x1920 -> 384x640
at img 640), resized bilinearly as official detect.py does; boxes are mapped back to original
pixels exactly.
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
from detect.backend import check_input_size
from detect.boxes import Letterbox
from detect.data.config import IMAGE_SUFFIXES, DataError, load_data_config, walk_images
from detect.data.dataset import load_image
from detect.data.images import safe_name
from detect.infer.options import add_inference_args, check_inference_args, describe, inference_config
from detect.infer.predictor import InferenceConfig, Predictor, whole_image_detections
from detect.infer.threads import settled_cpu_threads
from detect.infer.thresholds import keep_above, load_thresholds, lowest_threshold
from detect.outputs import atomic_write_bytes, atomic_write_text, ensure_writable
from detect.submission import check_submission_path, write_submission


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
    """One BGR image -> (n, 6) x1, y1, x2, y2, score, class in original pixels, one plain pass
    pre-processed as official detect.py (bilinear letterbox). ``Predictor`` composes the rest."""
    cfg = InferenceConfig(conf=conf, iou=iou, max_det=max_det, classes=tuple(classes) if classes else None,
                          agnostic=agnostic)
    return whole_image_detections(backend, img, img_size, cfg)


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
        epilog=EPILOG,
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--weights", required=True, nargs="+",
                   help="our .pt checkpoint, an official YOLOv5 .pt, .onnx or .engine; several are fused (--fuse)")
    p.add_argument("--source", required=True, help="an image, a folder or a glob pattern (quote it)")
    p.add_argument("--img", type=int, nargs="+", default=[640],
                   help="long side of the network input, pixels; several sizes are fused (--fuse)")
    p.add_argument("--conf", type=float, default=None, help="confidence threshold (default 0.25; 0.001 with --submission)")
    p.add_argument("--iou", type=float, default=None, help="NMS IoU threshold (default 0.45; 0.6 with --submission)")
    p.add_argument("--max-det", type=int, default=None, help="boxes kept per image (default 1000; 300 with --submission)")
    p.add_argument("--classes", type=int, nargs="+", default=None, help="keep only these class ids")
    p.add_argument("--agnostic-nms", action="store_true", help="NMS across classes")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--half", action="store_true", help="FP16 inference on CUDA; bf16 with --backend openvino")
    p.add_argument("--out", type=Path, default=Path("runs/predict/exp"), help="labels/ and images go here")
    p.add_argument("--json", type=Path, default=None, help="COCO-style detections list")
    p.add_argument("--save-images", action="store_true", help="write annotated images")
    p.add_argument("--submission", type=Path, default=None,
                   help="also write a submission file: .csv (image,class,score,x1,y1,x2,y2) or .json (COCO results)")
    p.add_argument("--coco-ann", type=Path, default=None,
                   help="COCO annotations whose image and category ids a .json submission uses")
    p.add_argument("--data", type=Path, default=None,
                   help="data.yaml whose class names and ids the output uses: the model's classes are matched by "
                   "name and the others dropped (e.g. person only from a COCO model)")
    p.add_argument("--conf-per-class", type=Path, default=None,
                   help="thresholds.json (detect.val --report DIR writes DIR/thresholds.json): one confidence "
                   "threshold per class, by name, for F1-scored competitions (replaces --conf)")
    p.add_argument("--no-class-map", action="store_true",
                   help="with --data: refuse a model whose classes differ from the data's instead of matching names")
    add_inference_args(p)
    args = p.parse_args(argv)
    scoring = args.submission is not None  # mAP rewards low-confidence boxes: score-ranked recall
    for name, plain, for_map in (("conf", 0.25, 0.001), ("iou", 0.45, 0.6), ("max_det", 1000, 300)):
        if getattr(args, name) is None:
            setattr(args, name, for_map if scoring else plain)
    return args


EPILOG = """examples:
  python -m detect.predict --weights best.pt --source test/ --submission sub.csv
  python -m detect.predict --weights a.pt b.onnx --img 640 800 --fuse wbf --augment --source test/ --json dets.json
  python -m detect.predict --weights best.pt --source big/ --slice 640x640 --slice-overlap 0.2 --save-images"""


def check_args(args) -> None:
    """Out-of-range numbers are one line and exit 2, before any model is loaded."""
    check_inference_args(args)
    cli.check_range("--conf", args.conf, 0, 1)
    cli.check_range("--iou", args.iou, 0, 1, low_open=True)
    cli.check_range("--max-det", args.max_det, 1)
    if args.submission is not None:
        check_submission_path(args.submission)
    if args.coco_ann is not None and (args.submission is None or args.submission.suffix.lower() != ".json"):
        raise cli.UsageError("--coco-ann applies to a .json --submission only")
    if args.no_class_map and args.data is None:
        raise cli.UsageError("--no-class-map applies with --data D")


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    files, root = collect_sources(args.source)
    ensure_writable(args.out / "labels")
    for out in (args.json, args.submission):
        if out is not None:
            ensure_writable(out.parent)
    device = cli.select_device(args.device)
    if args.conf_per_class is not None:  # the predictor keeps what any class might; the filter does the rest
        args.conf = lowest_threshold(args.conf_per_class)
    predictor = Predictor.from_weights(args.weights, args.img, device, inference_config(args), args.half,
                                       args.fuse_weights, args.backend, data_names(args))
    with settled_cpu_threads([m.backend for m in predictor.members]):  # ONNX Runtime / OpenVINO alone: the cores
        return predict(args, predictor, files, root)


def predict(args, predictor: Predictor, files: list[Path], root: Path | None) -> int:
    """Detect in ``files`` and write what the flags ask for: the command after its checks; the exit status."""
    for i, m in enumerate(predictor.members):  # members: each weights file at each size, in that order
        check_input_size(m.backend, m.img_size, args.weights[i // len(args.img)])
    print(f"inference: {describe(predictor.config, len(predictor.members))}")
    args.thresholds = None
    if args.conf_per_class is not None:
        args.thresholds = load_thresholds(args.conf_per_class, predictor.names)
        print("confidence per class: " + ", ".join(f"{n} {t:.3f}" for n, t in zip(predictor.names, args.thresholds.tolist())))
    results, failed = predict_files(predictor, files, root, args)
    print(f"{len(results)} detections in {len(files) - len(failed)} images -> {safe_name(args.out)}")
    for msg in failed:
        print(f"skipped: {msg}")
    if args.json:
        atomic_write_text(json.dumps(results, indent=1), args.json)
    if args.submission:
        write_submission(args.submission, results, predictor.names, args.coco_ann)
        print(f"submission: {len(results)} boxes -> {safe_name(args.submission)}")
    return 1 if failed and len(failed) == len(files) else 0


def data_names(args) -> tuple[list[str], str, bool] | None:
    """``--data``'s class names for ``Predictor.from_weights`` (None: the model's own classes)."""
    if args.data is None:
        return None
    return load_data_config(args.data).names, str(args.data), not args.no_class_map


def predict_files(predictor: Predictor, files: list[Path], root: Path | None, args) -> tuple[list[dict], list[str]]:
    """Run every file; write its label file (and annotated copy). Returns the ``--json`` records and
    the messages of unreadable files."""
    names = output_names(files, root)
    results, failed = [], []
    for f in tqdm(files, desc="predict", unit="img", disable=None):
        try:
            img = load_image(f)
        except OSError as e:
            failed.append(str(e))
            continue
        det = predictor(img)
        if args.thresholds is not None:
            det = keep_above(det, args.thresholds)
        h, w = img.shape[:2]
        name = names[f]
        label = args.out / "labels" / f"{name}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text("".join(s + "\n" for s in yolo_lines(det, h, w)), label)
        if args.save_images:
            save_annotated(draw(img, det, predictor.names), args.out / (name if name.suffix else name.with_suffix(f.suffix)))
        file_name = safe_name(f.relative_to(root) if root is not None else f.name)
        for x1, y1, x2, y2, score, cls in det.tolist():
            results.append(
                {"file_name": file_name, "category_id": int(cls), "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}
            )
    return results, failed


def save_annotated(img: np.ndarray, path: Path) -> None:
    """cv2.imencode + our atomic write: any file name, the suffix's format (jpg when it has none)."""
    ok, buf = cv2.imencode(path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".jpg", img)
    if ok:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(buf.tobytes(), path)


if __name__ == "__main__":
    cli.run(main)
