"""INT8 ONNX: static QDQ quantisation with ONNX Runtime, calibrated on letterboxed training images.

What stays in float decides whether a quantised YOLOv5 detects anything (onnxruntime issues
#10787, #14233: a fully quantised graph scores mAP 0). By default two parts are excluded:

- ``decode``: every node after the last convolutions (reshape, sigmoid, grid offsets, anchor
  powers, concat): box coordinates up to the input size share one INT8 scale with
  probabilities near 0 otherwise;
- ``head``: those last convolutions (their raw outputs are logits feeding the sigmoid);
- ``stem``: the first two (stride-2) convolutions and their activations, which see the raw
  image: keeping them in float took coco128's mAP50-95 loss from 0.007 to 0.002 for 1% of
  the time (docs/BENCHMARKS.md).

``--int8-exclude`` replaces that list: the words ``decode`` / ``head`` / ``stem``, ``none``, or
``fnmatch`` patterns of node names (``/model.23/*``). Weights are per-channel INT8;
activations UINT8 (ONNX Runtime's advice for x86; 7-bit weights, ``reduce_range``, on CPUs
without VNNI, recorded in the metadata). The calibration ranges are saved beside the model
(``model_int8.calib.json``) and reused when present with the same weights, images and method.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import onnx
import torch

from detect.boxes import prepare_image
from detect.data.config import load_data_config
from detect.data.dataset import load_image, to_tensor
from detect.data.labels import scan_split
from detect.errors import UsageError
from detect.evaluate import fixed_shape_map
from detect.infer.metadata import write_metadata
from detect.infer.runtimes import OnnxBackend

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_EXCLUDE = ("decode", "head", "stem")
CALIBRATION_FORMAT = 3  # 3: collected in chunks; 2: minmax over every image (1: only the last N mod 16); older redone
CHUNK_IMAGES = 16  # images whose every intermediate tensor is held at once while calibrating


def cpu_has_vnni() -> bool:
    try:
        flags = next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags"))
    except (OSError, StopIteration):
        return True
    return any(f in flags.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))


def weights_digest(model: onnx.ModelProto) -> str:
    """What the saved ranges depend on besides the images and method: the weights (initialisers of two or
    more dimensions). Without it, other weights exported into the same folder reused stale ranges. The
    batch size changes only 1-D shape constants, so a batch-1 export's ranges still serve its batch-8 twin."""
    digest = hashlib.sha256()
    for tensor in model.graph.initializer:
        if len(tensor.dims) >= 2:
            digest.update(onnx.numpy_helper.to_array(tensor).tobytes())
    return digest.hexdigest()[:16]


def head_and_decode(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """(the last convolutions, the decode nodes after them): walking back from the graph outputs,
    every node met before a Conv is decode, and the Convs that stop the walk are the head."""
    producer = {out: n for n in model.graph.node for out in n.output}
    head, decode, seen = [], [], set()
    stack = [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            head.append(node.name)
            continue
        decode.append(node.name)
        stack.extend(node.input)
    return sorted(head), sorted(decode)


def stem_nodes(model: onnx.ModelProto, convs: int = 2) -> list[str]:
    """The first ``convs`` Conv nodes (graph order) and every node of their modules (``/model.0/...``)."""
    first = [n.name for n in model.graph.node if n.op_type == "Conv"][:convs]
    prefixes = tuple(name.rsplit("/", 2)[0] + "/" for name in first if name.count("/") >= 2)
    return sorted({n.name for n in model.graph.node if n.name in first or (prefixes and n.name.startswith(prefixes))})


def excluded_nodes(model: onnx.ModelProto, spec: list[str]) -> list[str]:
    """Node names the ``--int8-exclude`` words and patterns select."""
    head, decode = head_and_decode(model)
    names = [n.name for n in model.graph.node]
    out: set[str] = set()
    for word in spec:
        if word == "none":
            continue
        if word == "head":
            out.update(head)
        elif word == "decode":
            out.update(decode)
        elif word == "stem":
            out.update(stem_nodes(model))
        else:
            hits = fnmatch.filter(names, word)
            if not hits:
                raise UsageError(f"--int8-exclude {word}: matches no node of the graph (e.g. {names[0]})")
            out.update(hits)
    return sorted(out)


def split_images(images: list[Path], n: int, held_out: int = 8, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """A fixed, seeded sample of ``n`` calibration images and ``held_out`` others for the error check."""
    pool = sorted(images)
    random.Random(seed).shuffle(pool)
    if len(pool) <= held_out:
        return pool, []
    return pool[: min(n, len(pool) - held_out)], pool[-held_out:]


def letterboxed(paths: list[Path], shape: tuple[int, int], stride: int):
    """Float (1, 3, h, w) arrays in [0, 1], letterboxed as val does."""
    for p in paths:
        net, _ = prepare_image(load_image(p), max(shape), stride, shape=shape)
        yield to_tensor(net)[None].float().div(255).numpy()


def chunk_size(batches: int, most: int) -> int:
    """The largest divisor of ``batches`` not above ``most`` (ONNX Runtime needs equal chunks)."""
    return max(d for d in range(1, max(1, min(batches, most)) + 1) if batches % d == 0)


class LetterboxReader:
    """``CalibrationDataReader``: each image as ``{"images": array}``, in batches of ``batch``."""

    def __init__(self, paths: list[Path], shape: tuple[int, int], stride: int, batch: int = 1):
        self.paths, self.shape, self.stride, self.batch = paths, shape, stride, batch
        self.rewind()

    def rewind(self):
        self._it = letterboxed(self.paths, self.shape, self.stride)

    def __len__(self) -> int:  # in batches: the unit of ONNX Runtime's CalibStridedMinMax chunks
        return -(-len(self.paths) // self.batch)

    def set_range(self, start_index: int, end_index: int):
        """Read only batches [start_index, end_index) (ONNX Runtime calls this for each chunk)."""
        self._it = letterboxed(self.paths[start_index * self.batch:end_index * self.batch], self.shape, self.stride)

    def get_next(self) -> dict | None:
        arrays = [a for _, a in zip(range(self.batch), self._it)]
        if not arrays:
            return None
        x = np.concatenate(arrays)
        if len(x) < self.batch:  # a fixed-batch graph: repeat the last image
            x = np.concatenate([x, np.repeat(x[-1:], self.batch - len(x), 0)])
        return {"images": x}

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item


def quantize(fp32: Path, out: Path, calib: list[Path], meta: dict, method: str = "percentile",
             exclude: list[str] | None = None, symmetric: bool = False) -> dict:
    """Write the QDQ model ``out`` from ``fp32``; returns what was done (for the metadata and report).
    ``symmetric``: INT8 activations with zero point 0, as TensorRT requires (else UINT8, for CPUs)."""
    from onnxruntime.quantization import (  # lazy: --int8 only
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    if method not in METHODS:
        raise UsageError(f"--calib-method {method}: expected one of {', '.join(METHODS)}")
    if not calib:
        raise UsageError("INT8 calibration needs images: --calib-data has none")
    exclude = list(DEFAULT_EXCLUDE if exclude is None else exclude)
    model = onnx.load(str(fp32))
    nodes = excluded_nodes(model, exclude)
    batch, _, h, w = meta["input_shape"]
    pre = out.with_name(out.stem + ".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    key = hashlib.sha256(json.dumps([method, [str(p) for p in calib], [h, w], CALIBRATION_FORMAT,
                                     weights_digest(model)]).encode()).hexdigest()[:16]
    cache = out.with_name("model_int8.calib.json")  # the ranges do not depend on the INT8 encoding: shared
    tag = out.with_name("model_int8.calib.key")
    if cache.is_file() and (not tag.is_file() or tag.read_text() != key):
        cache.unlink()  # other images or method: recalibrate
    reduce_range = not symmetric and not cpu_has_vnni()
    reader = LetterboxReader(calib, (h, w), meta["stride"], batch if batch > 0 else 1)
    try:
        quantize_static(
            str(pre), str(out), reader,
            quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=nodes,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            # no CalibMaxIntermediateOutputs: ONNX Runtime's MinMax calibrator discards every full chunk
            # without computing its range (onnxruntime #18893, still so in 1.32), so minmax saw only the
            # last N mod 16 images and stopped with "No data is collected" for 16, 32, ... images
            # in chunks: the calibrator holds every intermediate tensor of the images it is given (yolov5s,
            # 120 images at 384x640 in one go: 24 GiB, killed by the kernel); histograms merge across chunks
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True,
                           "CalibStridedMinMax": chunk_size(len(reader), max(1, CHUNK_IMAGES // reader.batch))},
            calibration_cache_path=str(cache),
        )
    except ValueError as e:  # numpy cannot bin a tensor whose values barely differ (seen with random weights)
        raise UsageError(f"{fp32}: INT8 calibration failed ({e}): a tensor is (near) constant over a chunk of "
                         "calibration images; quantise trained weights, or calibrate on other images") from None
    finally:
        pre.unlink(missing_ok=True)
    tag.write_text(key)
    info = {"method": method, "images": len(calib), "excluded": exclude, "excluded_nodes": len(nodes),
            "per_channel": True, "activations": "int8 symmetric" if symmetric else "uint8", "weights": "int8",
            "reduce_range": reduce_range, "calibration_table": cache.name}

    write_metadata(out, {**meta, "precision": "int8", "quantization": info})
    return info


def output_error(fp32: Path, int8: Path, paths: list[Path], meta: dict, conf: float = 0.25) -> dict:
    """INT8 against FP32 in ONNX Runtime on ``paths``: the largest score and box-corner differences
    over the anchors FP32 finds confident (score = objectness x best class > ``conf``)."""
    import onnxruntime as ort  # lazy: --int8 only

    batch, _, h, w = meta["input_shape"]
    runs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    score, box, n = 0.0, 0.0, 0
    for x in letterboxed(paths, (h, w), meta["stride"]):
        if batch > 1:
            x = np.repeat(x, batch, 0)
        a, b = (s.run(None, {"images": x})[0][:1] for s in runs)
        sa, sb = a[..., 4] * a[..., 5:].max(-1), b[..., 4] * b[..., 5:].max(-1)
        keep = sa > conf
        n += int(keep.sum())
        if keep.any():
            score = max(score, float(np.abs(sa - sb)[keep].max()))
            box = max(box, float(np.abs(a[..., :4] - b[..., :4])[keep].max()))
    return {"images": len(paths), "confident_anchors": n, "max_score_diff": score, "max_box_diff_px": box, "conf": conf}


def export_int8(fp32: Path, data: str | Path, meta: dict, n_images: int = 256, method: str = "percentile",
                exclude: list[str] | None = None, evaluate_map: bool = True) -> dict:
    """model_int8.onnx (UINT8 activations, for CPUs) and model_int8_trt.onnx (symmetric INT8, for
    TensorRT) beside ``fp32``, calibrated on ``data``'s training images; their metadata, the
    INT8-vs-FP32 output error on held-out images and, when ``data`` has a val split, both mAPs."""

    cfg = load_data_config(data)
    split = "train" if "train" in cfg.splits else "val"
    images = cfg.split(split).images
    calib, held_out = split_images(images, n_images)
    out = fp32.with_name("model_int8.onnx")
    meta = {**meta, "calib_data": str(data), "calib_split": split}
    info = quantize(fp32, out, calib, meta, method, exclude)
    trt_info = quantize(fp32, fp32.with_name("model_int8_trt.onnx"), calib, meta, method, exclude, symmetric=True)
    report = {"cpu": info, "tensorrt": trt_info, "calib_split": split,
              "error": output_error(fp32, out, held_out, meta) if held_out else None}
    if evaluate_map and "val" in cfg.splits:
        report["map"] = int8_map(fp32, out, cfg)
    return report


def int8_map(fp32: Path, int8: Path, cfg) -> dict:
    """mAP50-95 of the FP32 and INT8 graphs on the val split, at the export shape, in ONNX Runtime."""

    samples, _ = scan_split(cfg, "val", progress=False)
    backends = {name: OnnxBackend(path, torch.device("cpu")) for name, path in (("fp32", fp32), ("int8", int8))}
    return {name: fixed_shape_map(b, samples, cfg.names, b.fixed_shape) for name, b in backends.items()}
