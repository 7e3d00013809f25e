import os
import pickle
from pathlib import Path

import pytest
import torch

from detect.model import build_model, count_params, default_arch
from detect.weights import FORMAT, WeightsError, atomic_save, load_checkpoint, load_model, make_checkpoint


def test_official_yolov5n_imports_without_ultralytics(yolov5n_pt):
    ckpt = load_checkpoint(yolov5n_pt)
    assert ckpt["format"] == FORMAT and ckpt["arch"]["name"] == "yolov5n"
    assert ckpt["arch"]["nc"] == 80 and ckpt["names"][:3] == ["person", "bicycle", "car"]
    assert ckpt["arch"]["anchors"][0] == [10, 13, 16, 30, 33, 23]
    model, _ = load_model(yolov5n_pt, fuse=False)
    assert count_params(model) == 1872157
    assert "models" not in {m.split(".")[0] for m in __import__("sys").modules}  # no YOLOv5 code imported


def test_our_format_round_trip(tmp_path):
    model = build_model(default_arch("yolov5n", nc=3))
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "sub" / "ckpt.pt"
    atomic_save(make_checkpoint(model, ["a", "b", "c"], ema=ema, meta={"epoch": 3}), path)
    assert [p.name for p in path.parent.iterdir()] == ["ckpt.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)  # plain types and tensors only
    assert raw["names"] == ["a", "b", "c"] and raw["meta"] == {"epoch": 3}
    loaded, _ = load_model(path, fuse=False)  # picks the EMA weights
    key = "model.0.conv.weight"
    assert torch.equal(loaded.state_dict()[key], ema[key])


def test_atomic_save_keeps_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save({"format": FORMAT, "x": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True)["x"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Exploit(marker)}, path)
    with pytest.raises(WeightsError, match=r"refused to load.*(posix|os)\.system.*Nothing was executed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_payload_disguised_as_a_yolov5_class_runs_nothing(tmp_path, monkeypatch):
    """A callable published under a YOLOv5 module name becomes an inert placeholder: calling it
    during unpickling cannot reach real code."""
    import sys
    import types

    marker = tmp_path / "pwned"
    fake = types.ModuleType("models.common")

    def touch(path):
        Path(path).touch()

    touch.__module__, touch.__qualname__ = "models.common", "touch"
    fake.touch = touch
    monkeypatch.setitem(sys.modules, "models", types.ModuleType("models"))
    monkeypatch.setitem(sys.modules, "models.common", fake)

    class Payload:
        def __reduce__(self):
            return (touch, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "epoch": 1}, path)
    monkeypatch.delitem(sys.modules, "models.common")
    monkeypatch.delitem(sys.modules, "models")
    with pytest.raises(WeightsError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_bare_state_dict_and_garbage_give_clear_errors(tmp_path):
    sd_path = tmp_path / "sd.pt"
    torch.save(build_model(default_arch("yolov5n", nc=2)).state_dict(), sd_path)
    with pytest.raises(WeightsError, match="bare state dict has no architecture"):
        load_checkpoint(sd_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_checkpoint(junk)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_checkpoint(tmp_path / "missing.pt")


def test_truncated_checkpoint(tmp_path, yolov5n_pt):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(yolov5n_pt.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="cut.pt"):
        load_checkpoint(cut)


def test_weights_that_do_not_fit_the_arch(tmp_path):
    model = build_model(default_arch("yolov5n", nc=2))
    ckpt = make_checkpoint(model, ["a", "b"])
    ckpt["arch"]["channels"]["model.0"] = 8  # spec says 8, weights have 16
    atomic_save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="do not fit the architecture"):
        load_model(tmp_path / "bad.pt")


def test_pickle_module_is_not_used_directly():
    """Every load goes through torch.load(weights_only=True); the stdlib unpickler is never called."""
    src = (Path(__file__).parents[1] / "detect" / "weights.py").read_text()
    assert "pickle.load" not in src and "weights_only=True" in src
    assert pickle.UnpicklingError  # the only use: the error type


def _as_package_checkpoint(official: Path, out: Path) -> None:
    """Re-pickle the official yolov5n.pt the way the `yolov5` package's train.py saves it: the same module tree,
    its YOLOv5 classes under `yolov5.models.*`, plus the package's extra keys. Built here with stand-in
    classes (the package itself is never imported)."""
    import sys
    import types

    from detect import weights as w

    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(official))
    placeholders = {g: type(g.rsplit(".", 1)[1], (w._Inert,), {}) for g in unsafe if g not in w._NUMPY_ALLOWED}
    raw = w._torch_load(official, [(cls, g) for g, cls in placeholders.items()])
    standins, modules = {}, {}
    for g, cls in placeholders.items():
        module, name = g.rsplit(".", 1)
        if module.startswith("torch.nn."):
            standins[cls] = getattr(torch.nn, name)  # real torch layers, pickled as torch pickles them
            continue
        module = f"yolov5.{module}"
        fake = modules.setdefault(module, types.ModuleType(module))
        standins[cls] = type(name, (), {"__module__": module, "__qualname__": name})
        setattr(fake, name, standins[cls])

    def convert(obj):
        if isinstance(obj, w._Inert):
            new = object.__new__(standins[type(obj)])
            new.__dict__.update({k: convert(v) for k, v in obj.__dict__.items()})
            return new
        if isinstance(obj, dict):
            return type(obj)((k, convert(v)) for k, v in obj.items())
        if isinstance(obj, list | tuple):
            return type(obj)(convert(v) for v in obj)
        return obj

    import numpy as np

    # what the package's train.py saves mid-run (last.pt, or best.pt of an interrupted run): best_fitness is a
    # numpy array, whose dtype numpy 2 pickles as numpy.dtypes.Float64DType (seen in a real yolov5==7.0.14 run)
    ckpt = {**{k: v for k, v in raw.items() if k not in ("model", "ema")}, "model": convert(raw["model"]), "ema": None,
            "yolov5pip_version": "7.0.14", "opt": {"imgsz": 320, "epochs": 10}, "date": "2026-12-03T10:00:00",
            "best_fitness": np.array([0.3121]), "epoch": np.int64(3)}
    saved = dict(sys.modules)
    sys.modules.update({"yolov5": types.ModuleType("yolov5"), "yolov5.models": types.ModuleType("yolov5.models"),
                        "yolov5.utils": types.ModuleType("yolov5.utils"), **modules})
    try:
        torch.save(ckpt, out)
    finally:
        for name in set(sys.modules) - set(saved):
            del sys.modules[name]


def test_a_yolov5_package_checkpoint_loads_as_the_repositorys(tmp_path, yolov5n_pt):
    """best.pt from the `yolov5` package (classes under yolov5.models.*, extra keys): the same model, the same
    detections as the repository's file, and a start for fine-tuning; nothing of the package is imported."""
    import sys

    from detect.backend import TorchBackend
    from detect.data.dataset import load_image
    from detect.infer.predictor import InferenceConfig, Member, Predictor
    from tests.conftest import shared_path

    path = tmp_path / "best.pt"
    _as_package_checkpoint(yolov5n_pt, path)
    assert any(g.startswith("yolov5.models.") for g in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    ours, theirs = load_checkpoint(yolov5n_pt), load_checkpoint(path)
    assert theirs["arch"] == ours["arch"] and theirs["names"] == ours["names"]
    assert all(torch.equal(theirs["model"][k], v) for k, v in ours["model"].items())
    image = load_image(shared_path("images/bus.jpg"))
    dets = [Predictor([Member(TorchBackend(p, torch.device("cpu")), 640)], InferenceConfig())(image)
            for p in (yolov5n_pt, path)]
    assert len(dets[0]) >= 4 and torch.equal(dets[0], dets[1])
    assert "yolov5" not in sys.modules
    from detect.train import TrainConfig
    from detect.train.builders import build_train_model

    model, note = build_train_model(TrainConfig(data="unused.yaml", weights=str(path), img=320), ["person", "bus"])
    assert "from" in note and model.arch["nc"] == 2  # fine-tuning starts from it, person and bus rows kept


@pytest.mark.parametrize("module", ["models.common", "yolov5.models.common", "yolov5.utils.general"])
def test_a_payload_under_any_yolov5_module_name_runs_nothing(tmp_path, monkeypatch, module):
    import sys
    import types

    marker = tmp_path / "pwned"
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))

    def touch(path):
        Path(path).touch()

    touch.__module__, touch.__qualname__ = module, "touch"
    sys.modules[module].touch = touch

    class Payload:
        def __reduce__(self):
            return (touch, (str(marker),))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "epoch": 1, "yolov5pip_version": "7.0.14"}, path)
    for i in range(len(parts), 0, -1):
        monkeypatch.delitem(sys.modules, ".".join(parts[:i]))
    with pytest.raises(WeightsError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()
