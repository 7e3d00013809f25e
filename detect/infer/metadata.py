"""The metadata a deployed ONNX graph carries: class names, stride, input shape, precision.

``deploy.export`` writes it and every runtime reads it (``detect.infer.runtimes``), so it lives with
inference: a graph is self-describing, and nothing that runs one needs the exporter. Files of the official
YOLOv5 exporter (``export.py --include onnx``) are read too, from its ``stride`` and ``names`` entries.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import TYPE_CHECKING

from detect.errors import WeightsError

if TYPE_CHECKING:
    import onnx

META_VERSION = "1"


def write_metadata(path: Path, meta: dict) -> None:
    import onnx  # lazy: an ONNX file is read or written here only; at module level it cost every CLI 0.4 s

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v if k == "exporter" else json.dumps(v)  # the tag stays readable as is
    onnx.save(model, str(path))


OFFICIAL_EXPORTER = "yolov5 export.py"  # what read_metadata calls a file of the official exporter


def read_metadata(path: Path) -> dict:
    """The graph's metadata (names, stride, input shape, precision; ``output_name``: the decoded output's)
    from deploy.export's entries or from the official YOLOv5 exporter's; WeightsError for anything else."""
    import onnx  # lazy: an ONNX file is read or written here only; at module level it cost every CLI 0.4 s

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)  # weights in a .onnx.data file stay there
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        raise WeightsError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    raw = {p.key: p.value for p in model.metadata_props}
    if raw.get("exporter") == "deploy.export":
        return _ours(path, raw)
    if "stride" in raw and "names" in raw:
        return _official(path, model, raw)
    raise WeightsError(
        f"{path}: no metadata this pipeline reads: neither deploy.export's (names, stride, input shape) nor the "
        f"official YOLOv5 exporter's (stride, names; it has: {', '.join(sorted(raw)) or 'none'}); export it with "
        "python -m deploy.export"
    )


def _ours(path: Path, raw: dict) -> dict:
    try:
        meta = {k: (v if k == "exporter" else json.loads(v)) for k, v in raw.items()}
        if not isinstance(meta["names"], list) or len(meta["input_shape"]) != 4:
            raise ValueError("names / input_shape")
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: its deploy.export metadata is damaged ({e}); re-export it") from None
    return meta


def _official(path: Path, model: onnx.ModelProto, raw: dict) -> dict:
    """The official exporter's file: ``names`` is a Python dict's repr (parsed as a literal, never evaluated),
    ``stride`` a number; the input shape comes from the graph (a named axis is dynamic: -1), and the decoded
    output is the first whose last dimension is 5 + nc (per-level outputs may follow it)."""
    try:
        names = ast.literal_eval(raw["names"])
        names = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
        stride = int(float(ast.literal_eval(raw["stride"])))
    except (ValueError, SyntaxError, TypeError, KeyError) as e:
        raise WeightsError(f"{path}: its YOLOv5 metadata (names, stride) cannot be read ({type(e).__name__})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise WeightsError(f"{path}: input {inputs[0].name} has {len(dims)} dimensions, not (batch, 3, h, w)")
    outputs = [o for o in model.graph.output
               if (o.type.tensor_type.shape.dim[-1:] or [None])[0] is not None
               and o.type.tensor_type.shape.dim[-1].dim_value == 5 + len(names)]
    if not outputs:
        raise WeightsError(f"{path}: no output with 5 + {len(names)} values per box (the decoded YOLOv5 output); "
                           "export it without --include-nms / end-to-end heads")
    from onnx import TensorProto  # loaded already: read_metadata imported onnx to get here

    half = inputs[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    return {"exporter": OFFICIAL_EXPORTER, "names": names, "stride": stride, "input_shape": dims,
            "max_batch": max(dims[0], 0), "precision": "fp16" if half else "fp32", "input_name": inputs[0].name,
            "output_name": outputs[0].name}
