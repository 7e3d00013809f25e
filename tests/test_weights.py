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
