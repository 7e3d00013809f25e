"""The metadata a deployed ONNX graph carries: class names, stride, input shape, precision.

``deploy.export`` writes it and every runtime reads it (``detect.infer.runtimes``), so it lives with
inference: a graph is self-describing, and nothing that runs one needs the exporter.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from detect.errors import WeightsError

META_VERSION = "1"


def write_metadata(path: Path, meta: dict) -> None:
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v if k == "exporter" else json.dumps(v)  # the tag stays readable as is
    onnx.save(model, str(path))


def read_metadata(path: Path) -> dict:
    """Our export metadata (names, stride, input shape...); WeightsError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {'a folder' if path.is_dir() else 'no such file'}, not an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends: not an ONNX file
        raise WeightsError(f"{path}: not a readable ONNX model ({type(e).__name__})") from None
    raw = {p.key: p.value for p in model.metadata_props}
    if raw.get("exporter") != "deploy.export":
        raise WeightsError(
            f"{path}: not exported by deploy.export (no metadata with names, stride and input shape); "
            "export it with python -m deploy.export"
        )
    try:
        meta = {k: (v if k == "exporter" else json.loads(v)) for k, v in raw.items()}
        if not isinstance(meta["names"], list) or len(meta["input_shape"]) != 4:
            raise ValueError("names / input_shape")
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"{path}: its deploy.export metadata is damaged ({e}); re-export it") from None
    return meta
