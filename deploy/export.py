"""Export a detector to ONNX (FP32 and FP16), simplified, with its metadata, checked in ONNX Runtime.

    python -m deploy.export --weights W --img 384 640 [--batch 1 | --dynamic-batch MAX] [--opset 17] \\
        [--nms] [--triton DIR] --out DIR

model.onnx computes in FP32; model_fp16.onnx computes in FP16 with FP32 inputs and outputs.
Without --nms the output keeps YOLOv5's layout, (batch, boxes, 5 + nc): cx, cy, w, h in
input pixels, objectness, class scores. Right after export both files run in ONNX Runtime
on real images and are compared with PyTorch (FP32 within 1e-4 relative, FP16 within 1e-2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from deploy.nms_graph import add_efficient_nms, add_onnx_nms
from deploy.quantize import export_int8, head_and_decode, letterboxed
from deploy.triton import write_repository
from detect import cli
from detect.boxes import PAD_VALUE, prepare_image
from detect.data.dataset import to_tensor
from detect.data.synthetic import make_image
from detect.errors import UsageError
from detect.infer.metadata import META_VERSION, write_metadata
from detect.infer.onnx_graph import export_onnx
from detect.outputs import ensure_writable, umask, write_json
from detect.paths import shared_dir
from detect.weights import load_model

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}


def simplify(path: Path) -> None:
    import onnxslim  # lazy: the simplification step only

    model = onnxslim.slim(onnx.load(str(path)))
    onnx.save(model, str(path))


def fp16_twin(path: Path) -> Path:
    """The FP16 graph beside an FP32 one, by one rule for every file export writes:
    model.onnx -> model_fp16.onnx, model_nms.onnx -> model_nms_fp16.onnx (what deploy.trt
    builds from on TensorRT 11, which has no FP16 builder flag)."""
    return path.with_name(path.stem.replace("_fp16", "") + "_fp16.onnx")


def to_fp16(src: Path, dst: Path, keep_decode_fp32: bool = True) -> None:
    """FP16 weights and compute, FP32 at the boundary (callers keep feeding float32). The Detect
    decode (grid offsets, anchor sizes: values up to the input size) stays FP32, as NVIDIA's
    TensorRT 10->11 migration (ModelOpt AutoCast) keeps nodes beyond FP16's comfortable range."""
    from onnxruntime.transformers.float16 import convert_float_to_float16  # lazy: the FP16 graph only

    model = onnx.load(str(src))
    blocked = head_and_decode(model)[1] if keep_decode_fp32 else []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = convert_float_to_float16(model, keep_io_types=True, node_block_list=blocked)
    onnx.save(model, str(dst))
    simplify(dst)  # the converter appends its input Cast last: re-sort the graph topologically
    onnx.checker.check_model(onnx.load(str(dst)))


def check_images(paths: list[Path], shape: tuple[int, int], stride: int, n: int = 2) -> torch.Tensor:
    """Real photos letterboxed to the export shape (as calibration images are); a synthetic scene if none are given."""

    if paths:
        return torch.from_numpy(np.concatenate(list(letterboxed(paths[:n], shape, stride))))

    img, _, _ = make_image(0, seed=0)
    return to_tensor(prepare_image(img, max(shape), stride, shape=shape)[0])[None].float() / 255


def parity(model: torch.nn.Module, onnx_path: Path, x: torch.Tensor, batch: int | None) -> dict:
    """Max error of ONNX Runtime vs PyTorch, relative to the largest magnitude per part of the output."""
    import onnxruntime as ort  # lazy: the parity check only

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = model(x).numpy()
    chunks = [x[i : i + 1] for i in range(len(x))] if batch == 1 else [x]
    got = np.concatenate([sess.run(None, {"images": c.numpy()})[0] for c in chunks])
    out = {}
    for part, sl in (("boxes", slice(0, 4)), ("scores", slice(4, None))):
        a, b = got[..., sl], ref[..., sl]
        out[part] = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-9))
    out["max_relative"] = max(out["boxes"], out["scores"])
    return out


@dataclass
class Exported:
    """What ``export`` wrote and what it exported from: the parity check and the INT8 step read both."""

    fp32: Path  # model.onnx
    fp16: Path  # model_fp16.onnx
    model: torch.nn.Module  # the PyTorch model, BN fused, on the CPU
    ckpt: dict
    meta: dict  # the graphs' metadata (detect.infer.metadata)


def export(weights, out: Path, shape: tuple[int, int], batch: int = 1, dynamic: bool = False,
           opset: int = 17) -> Exported:
    """model.onnx and model_fp16.onnx of ``weights`` at ``shape`` with our metadata (the library entry point)."""
    out = ensure_writable(out)
    model, ckpt = load_model(weights, "cpu")
    stride = int(model.stride.max())
    h, w = shape
    if h % stride or w % stride:
        raise UsageError(f"--img {h} {w}: both sides must be multiples of the stride {stride}")
    fp32, fp16 = out / "model.onnx", out / "model_fp16.onnx"
    meta = {
        "exporter": "deploy.export",
        "version": META_VERSION,
        "names": ckpt["names"],
        "stride": stride,
        "input_shape": [-1 if dynamic else batch, 3, h, w],
        "max_batch": batch,
        "letterbox": {"mode": "resize long side, then pad centred", "pad_value": PAD_VALUE, "img_size": max(h, w)},
        "output": "cx, cy, w, h (input pixels), objectness, class scores",
        "arch": ckpt["arch"].get("name", "custom"),
    }
    # Built in a private folder beside the outputs, then renamed into place: a reader never sees a
    # half-written model.onnx, and a failed export leaves the previous files as they were.
    with tempfile.TemporaryDirectory(prefix=".export-", dir=out) as tmp:
        t32, t16 = Path(tmp) / fp32.name, Path(tmp) / fp16.name
        export_onnx(model, t32, (h, w), batch, dynamic, opset)
        simplify(t32)
        to_fp16(t32, t16)
        for path, precision in ((t32, "fp32"), (t16, "fp16")):
            write_metadata(path, {**meta, "precision": precision})
            os.chmod(path, 0o666 & ~umask())
        os.replace(t32, fp32)
        os.replace(t16, fp16)
    return Exported(fp32, fp16, model, ckpt, meta)


def check_args(args) -> None:
    """Out-of-range numbers: one line and exit 2, before the model is loaded."""
    cli.check_img(*args.img)
    cli.check_range("--batch", args.batch, 1)
    cli.check_range("--dynamic-batch", args.dynamic_batch, 0)
    cli.check_range("--conf", args.conf, 0, 1)
    cli.check_range("--iou", args.iou, 0, 1, low_open=True)
    cli.check_range("--max-det", args.max_det, 1)
    cli.check_range("--calib-images", args.calib_images, 1)
    if args.int8 and not args.calib_data:
        raise UsageError("--int8 needs --calib-data data.yaml (its training images calibrate the activation ranges)")
    if args.calib_data and not args.int8:
        raise UsageError("--calib-data is used by --int8: add --int8")


def int8_step(fp32: Path, args, meta: dict) -> dict:
    """Quantise, then say what it cost: the output error on held-out images and, with a val split, mAP."""

    r = export_int8(fp32, args.calib_data, meta, args.calib_images, args.calib_method, args.int8_exclude)
    q = r["cpu"]
    print(f"model_int8.onnx, model_int8_trt.onnx: {q['method']} calibration on {q['images']} {r['calib_split']} images, "
          f"kept in float: {' '.join(q['excluded']) or 'nothing'} ({q['excluded_nodes']} nodes)")
    if r["error"]:
        e = r["error"]
        print(f"  INT8 vs FP32 in ONNX Runtime on {e['images']} held-out images: score differs by up to "
              f"{e['max_score_diff']:.3f}, box by up to {e['max_box_diff_px']:.1f} px (anchors scoring > {e['conf']})")
    if r.get("map"):
        m = r["map"]
        print(f"  mAP50-95 on the val split at {meta['input_shape'][2]}x{meta['input_shape'][3]}: FP32 "
              f"{m['fp32']['map50_95']:.4f}, INT8 {m['int8']['map50_95']:.4f}")
    return r


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m deploy.export",
        description=__doc__.split("\n\n")[0],
        formatter_class=cli.HelpFormatter,
    )
    p.add_argument("--weights", required=True, help="our checkpoint or an official YOLOv5 .pt")
    p.add_argument("--img", type=int, nargs=2, default=[384, 640], metavar=("H", "W"), help="input height and width")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", type=int, default=1, help="fixed batch size")
    g.add_argument("--dynamic-batch", type=int, default=0, metavar="MAX", help="dynamic batch up to MAX")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of the exported graphs")
    p.add_argument("--nms", action="store_true", help="also write graphs with NMS inside (ONNX Runtime and TensorRT)")
    p.add_argument("--conf", type=float, default=0.25, help="score threshold of the --nms graphs")
    p.add_argument("--iou", type=float, default=0.45, help="IoU threshold of the --nms graphs")
    p.add_argument("--max-det", type=int, default=300, help="boxes kept per image (per class for ONNX NMS)")
    p.add_argument(
        "--check-images", default=None, help="folder of photos for the parity check (default: shared demo photos)"
    )
    p.add_argument("--triton", type=Path, default=None, help="also write a Triton model repository here")
    q = p.add_argument_group("INT8 (static QDQ quantisation, calibrated)")
    q.add_argument("--int8", action="store_true",
                   help="also write model_int8.onnx (CPU: UINT8 activations) and model_int8_trt.onnx (TensorRT: symmetric)")
    q.add_argument("--calib-data", default=None, help="data.yaml whose training images calibrate (its val split: mAP check)")
    q.add_argument("--calib-images", type=int, default=256, help="calibration images (a fixed, seeded sample)")
    q.add_argument("--calib-method", choices=["minmax", "entropy", "percentile"], default="percentile",
                   help="how activation ranges are chosen from the calibration images (percentile: 99.999%%)")
    q.add_argument("--int8-exclude", nargs="+", default=None, metavar="NODES",
                   help="what stays in float: the words decode, head, stem, none, or node-name patterns "
                   "(/model.23/*); default: decode head stem")
    p.add_argument("--out", type=Path, required=True)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    check_args(args)
    h, w = args.img
    done = export(args.weights, args.out, (h, w), args.dynamic_batch or args.batch, bool(args.dynamic_batch),
                  args.opset)
    fp32, fp16, model, ckpt, meta = done.fp32, done.fp16, done.model, done.ckpt, done.meta
    stride, batch = meta["stride"], meta["max_batch"]
    shared = shared_dir() / "images"
    folder = Path(args.check_images) if args.check_images else shared
    photos = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
    x = check_images(photos, (h, w), stride, n=batch if not args.dynamic_batch else 2)
    report = {
        "shape": [h, w],
        "batch": batch,
        "dynamic_batch": bool(args.dynamic_batch),
        "images": [str(q) for q in photos[:2]],
    }
    failed = []
    for path, precision in ((fp32, "fp32"), (fp16, "fp16")):
        err = parity(model, path, x, None if args.dynamic_batch else batch)
        report[precision] = {
            **err,
            "tolerance": TOLERANCE[precision],
            "ok": err["max_relative"] <= TOLERANCE[precision],
        }
        print(
            f"{path.name}: ONNX Runtime vs PyTorch max relative error {err['max_relative']:.2e} "
            f"(boxes {err['boxes']:.2e}, scores {err['scores']:.2e}; tolerance {TOLERANCE[precision]:g})"
        )
        if not report[precision]["ok"]:
            failed.append(precision)
    if args.nms:
        nc = len(ckpt["names"])
        for name in ("model_nms.onnx", "model_trt_nms.onnx"):  # each with its FP16 twin (deploy.trt on TensorRT 11)
            for src, dst in ((fp32, args.out / name), (fp16, fp16_twin(args.out / name))):
                if "trt" in name:
                    add_efficient_nms(src, dst, args.conf, args.iou, args.max_det)
                else:
                    add_onnx_nms(src, dst, nc, args.conf, args.iou, args.max_det)
        print(
            "NMS graphs: model_nms.onnx, model_nms_fp16.onnx (ONNX NonMaxSuppression), model_trt_nms.onnx, "
            "model_trt_nms_fp16.onnx (EfficientNMS_TRT, TensorRT only)"
        )
    if args.int8:
        report["int8"] = int8_step(fp32, args, meta)
    if args.triton:
        print(f"Triton repository: {write_repository(args.triton, fp32, meta)}")
    write_json(report, args.out / "export.json")
    if "fp32" in failed:  # the FP32 graph must reproduce PyTorch; anything else is an export bug
        raise UsageError(
            f"model.onnx differs from PyTorch beyond {TOLERANCE['fp32']:g} in ONNX Runtime; see {args.out / 'export.json'}"
        )
    if "fp16" in failed:  # FP16 accumulation error grows with the input size: usable, but say so
        print(
            f"warning: model_fp16.onnx differs from PyTorch by {report['fp16']['max_relative']:.2e} (> "
            f"{TOLERANCE['fp16']:g}) at {h}x{w}; check its mAP with detect.val before deploying it",
            file=sys.stderr,
        )
    print(f"wrote {fp32} and {fp16}")
    return 0


if __name__ == "__main__":
    cli.run(main)
