"""Checkpoints: our plain format, atomic writes, and a safe import of official YOLOv5 ``.pt``.

Our format is a dict of plain Python types and tensors, so ``torch.load(weights_only=True)``
reads it without running code::

    {"format": FORMAT, "arch": {...}, "names": [...], "model": state_dict,
     "ema": state_dict | None, "train": {...} (last.pt only), "meta": {...}}

Official YOLOv5 files pickle whole ``nn.Module`` objects of classes from the ultralytics
repository (``models.yolo.Model``, ``models.common.C3``...), or from the ``yolov5`` package
(``yolov5.models.yolo.Model``...), whose checkpoints also carry keys such as ``yolov5pip_version``. We never import that code: the
checkpoint's globals are listed first (an opcode scan, nothing runs), YOLOv5's and torch.nn's
module classes are mapped to inert placeholders that only receive their ``__dict__``, and
anything else that is not a tensor or container refuses the whole file.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from detect.errors import WeightsError
from detect.model import SCALES, YOLOv5
from detect.outputs import atomic_write_bytes

FORMAT = "detect-ckpt/1"
# Module prefixes whose classes become placeholders: YOLOv5's own code — as the repository's train.py pickles it
# (models.yolo.Model) and as the `yolov5` package's does (yolov5.models.yolo.Model) — and torch.nn layers.
_PLACEHOLDER_PREFIXES = ("models.", "utils.", "yolov5.models.", "yolov5.utils.", "torch.nn.modules.")
# numpy pieces older YOLOv5 checkpoints may carry in their training options; none runs code.
_NUMPY_ALLOWED = {
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
}


class _Inert:
    """Stand-in for a pickled class: receives its attributes, has no behaviour."""

    def __repr__(self) -> str:
        return f"<inert {type(self).__name__}>"


# --------------------------------------------------------------------------- saving
def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` into memory, then an atomic write (see ``detect.outputs``).

    Serialising first keeps torch's stream-writer errors (``inline_container.cc``) away from disk
    errors: a full disk is an ``OutputError`` naming the path, and the previous file stays intact.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def _cpu_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone() for k, v in sd.items()}


def make_checkpoint(
    model: YOLOv5,
    names: list[str],
    ema: dict[str, torch.Tensor] | None = None,
    train: dict | None = None,
    meta: dict | None = None,
) -> dict:
    """Assemble our checkpoint dict (``ema`` is a state dict, not a module)."""
    ckpt = {
        "format": FORMAT,
        "arch": dict(model.arch),
        "names": list(names),
        "model": _cpu_state(model.state_dict()),
        "ema": _cpu_state(ema) if ema is not None else None,
        "meta": dict(meta or {}),
    }
    if train is not None:
        ckpt["train"] = train
    return ckpt


# --------------------------------------------------------------------------- loading
def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read our format or an official YOLOv5 ``.pt`` into our format; never executes pickled code."""
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: a folder, not a weights file")
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception as e:  # not a zip/pickle torch file at all
        raise WeightsError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e})") from None
    if not unsafe:
        ckpt = _torch_load(path, [])
        if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
            return check_checkpoint(ckpt, path)
        if isinstance(ckpt, dict) and isinstance(ckpt.get("format"), str):
            raise WeightsError(f"{path}: checkpoint format {ckpt['format']!r}, this version reads {FORMAT!r}")
        raise WeightsError(
            f"{path}: a PyTorch file, but neither our checkpoint format nor an official YOLOv5 checkpoint "
            "(a bare state dict has no architecture; save it with detect.weights.make_checkpoint)"
        )
    refused = sorted(g for g in unsafe if not g.startswith(_PLACEHOLDER_PREFIXES) and g not in _NUMPY_ALLOWED)
    if refused:
        raise WeightsError(
            f"{path}: refused to load: the file asks to call {', '.join(refused)}, which is not a tensor, "
            "a container or a YOLOv5 layer. Nothing was executed. Only use weights from a source you trust."
        )
    placeholders = [(type(g.rsplit(".", 1)[1], (_Inert,), {}), g) for g in unsafe if g not in _NUMPY_ALLOWED]
    numpy_globals = [_numpy_global(g) for g in unsafe if g in _NUMPY_ALLOWED]
    if numpy_globals:
        numpy_globals += _numpy_dtype_classes()
    return import_official(_torch_load(path, placeholders + numpy_globals), path)


def check_checkpoint(ckpt: dict, path) -> dict:
    """Our format's fields, type-checked: a damaged or hand-made file is one clear error, not a KeyError."""

    def bad(what: str):
        return WeightsError(f"{path}: {what}; re-save it with detect.weights.make_checkpoint or re-export it")

    arch = ckpt.get("arch")
    if not isinstance(arch, dict) or not isinstance(arch.get("nc"), int):
        raise bad("no architecture ('arch' with 'nc') in the checkpoint")
    names = ckpt.get("names")
    if not isinstance(names, list) or len(names) != arch["nc"] or not all(isinstance(n, str) for n in names):
        raise bad(f"'names' must be a list of {arch['nc']} class names, got {type(names).__name__}")
    if not isinstance(ckpt.get("model"), dict) or not ckpt["model"]:
        raise bad("no model weights ('model' state dict)")
    if ckpt.get("ema") is not None and not isinstance(ckpt["ema"], dict):
        raise bad("'ema' must be a state dict or None")
    return ckpt


def _numpy_global(name: str):
    import importlib  # lazy: the official-checkpoint path only

    module, attr = name.rsplit(".", 1)
    return (getattr(importlib.import_module(module), attr), name)


def _numpy_dtype_classes() -> list:
    """numpy 2's per-dtype classes (``numpy.dtypes.Float64DType``), which a pickled array or scalar rebuilds its
    dtype with — the official trainer's unstripped checkpoints (``last.pt`` mid-run) hold ``best_fitness`` as a
    numpy array. Data types only; the object dtype is left out, so no array of arbitrary objects loads."""
    import numpy as np  # lazy: the official-checkpoint path only

    return [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType") and n != "ObjectDType"]


def _torch_load(path: Path, extra_globals: list) -> Any:
    try:
        with torch.serialization.safe_globals(extra_globals):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0]
        raise WeightsError(f"{path}: refused to load ({first}). Nothing was executed.") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise WeightsError(f"{path}: unreadable or truncated checkpoint ({e})") from None
    except Exception as e:  # a placeholder called with arguments, a malformed stream: refuse, never trace back
        raise WeightsError(f"{path}: refused to load: malformed checkpoint ({type(e).__name__}: {e})") from None


def _module_state(obj: _Inert, prefix: str = "") -> dict[str, torch.Tensor]:
    """Rebuild ``state_dict()`` from a placeholder tree's ``_parameters``/``_buffers``/``_modules``."""
    d = obj.__dict__
    skip = d.get("_non_persistent_buffers_set", set())
    sd = {prefix + k: v for k, v in d.get("_parameters", {}).items() if v is not None}
    sd.update({prefix + k: v for k, v in d.get("_buffers", {}).items() if v is not None and k not in skip})
    for name, child in d.get("_modules", {}).items():
        if child is not None:
            sd.update(_module_state(child, f"{prefix}{name}."))
    return sd


def import_official(raw: dict, path: str | os.PathLike = "<official>") -> dict:
    """Convert a placeholder-loaded official checkpoint into our format (state dict, arch, names)."""
    obj = (raw.get("ema") or raw.get("model")) if isinstance(raw, dict) else None
    if not isinstance(obj, _Inert) or not isinstance(getattr(obj, "yaml", None), dict):
        raise WeightsError(f"{path}: not an official YOLOv5 detection checkpoint (no model with a yaml spec)")
    cfg = obj.yaml
    sd = {k: v.float() for k, v in _module_state(obj).items()}
    layers = [row[2] for row in cfg.get("backbone", []) + cfg.get("head", [])]
    if layers[-1:] != ["Detect"] or "SPPF" not in layers or "Focus" in layers:
        raise WeightsError(
            f"{path}: unsupported YOLOv5 variant (layers {', '.join(layers)}); this pipeline reads the "
            "v6.0-v7.0 detection architecture (6x6 Conv stem, C3, SPPF, Detect)"
        )
    nc = int(cfg.get("nc", getattr(obj, "nc", 80)))
    names = getattr(obj, "names", None) or [f"class{i}" for i in range(nc)]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    arch = {
        "name": _scale_name(cfg["depth_multiple"], cfg["width_multiple"]),
        "nc": nc,
        "depth_multiple": float(cfg["depth_multiple"]),
        "width_multiple": float(cfg["width_multiple"]),
    }
    strides = getattr(obj, "stride", torch.tensor([8.0, 16.0, 32.0]))
    anchors = sd.get("model.24.anchors")
    if anchors is None:
        raise WeightsError(f"{path}: Detect layer has no anchors buffer; not a v6.0-v7.0 YOLOv5 checkpoint")
    arch["anchors"] = (anchors * strides.view(-1, 1, 1)).view(len(anchors), -1).tolist()
    arch["strides"] = [int(s) for s in strides.tolist()]
    skeleton = YOLOv5(arch)  # default widths at these multiples: the names of every Conv
    arch["channels"] = {
        name: int(sd[f"{name}.conv.weight"].shape[0])
        for name in skeleton.arch["channels"]
        if f"{name}.conv.weight" in sd
    }
    ckpt = {
        "format": FORMAT,
        "arch": arch,
        "names": [str(n) for n in names],
        "model": sd,
        "ema": None,
        "meta": {
            "source": "official YOLOv5",
            "file": Path(path).name,
            "date": raw.get("date"),
            "epoch": raw.get("epoch"),
        },
    }
    build_from_checkpoint(ckpt, path)  # validates every key and shape now, with a clear error
    return ckpt


def _scale_name(depth: float, width: float) -> str:
    for name, (d, w) in SCALES.items():
        if abs(d - depth) < 1e-6 and abs(w - width) < 1e-6:
            return name
    return f"yolov5-d{depth:g}-w{width:g}"


def build_from_checkpoint(ckpt: dict, path: str | os.PathLike = "<checkpoint>", use_ema: bool = True) -> YOLOv5:
    """The model described by ``ckpt['arch']`` with the EMA weights if present, else the raw ones."""
    try:
        model = YOLOv5(ckpt["arch"])
    except (KeyError, TypeError, ValueError, IndexError, AssertionError) as e:
        raise WeightsError(f"{path}: its architecture cannot be built ({type(e).__name__}: {e})") from None
    sd = ckpt["ema"] if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    try:
        result = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise WeightsError(f"{path}: weights do not fit the architecture: {str(e).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"{path}: weights do not fit the architecture: missing {result.missing_keys[:4]}, "
            f"unexpected {result.unexpected_keys[:4]}"
        )
    return model


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", fuse: bool = True) -> tuple[YOLOv5, dict]:
    """Load any supported ``.pt`` for inference: eval mode, float32, BN fused by default."""
    ckpt = load_checkpoint(path)
    model = build_from_checkpoint(ckpt, path).float().eval()
    if fuse:
        model.fuse()
    return model.to(device), ckpt
