"""One odd file never stops a stage: each case of a real dataset's oddities, built in a temp dir.

Every CLI case asserts the exit status, a single ``error:`` line where it refuses, and no traceback.
"""

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detect.data.config import DataError, load_data_config
from detect.data.labels import LabelReport, parse_yolo_label, scan_split
from detect.model import build_model, default_arch
from detect.weights import atomic_save, make_checkpoint
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def _jpeg(size=(64, 48), colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def _png(size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 200, 10)).save(buf, "PNG")
    return buf.getvalue()


def _png_declaring(w: int, h: int) -> bytes:
    """A PNG whose header declares w x h pixels (a decompression bomb's header; a few bytes on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def odd_dataset(tmp_path):
    """Good images beside every oddity of issue 12; each has one label line."""
    root = tmp_path / "odd"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    files = {
        "good.jpg": _jpeg(),
        "trailer.jpg": _jpeg() + b"\x00" * 64 + b"PHONE-TRAILER",  # bytes after the end-of-image marker
        "png_named.jpg": _png(),
        "truncated.jpg": _jpeg((256, 256))[:400],
    }
    for name, data in files.items():
        (root / "images" / name).write_bytes(data)
        (root / "labels" / f"{Path(name).stem}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "images" / "bomb.png").write_bytes(_png_declaring(60000, 60000))
    os.symlink("loop.jpg", root / "images" / "loop.jpg")  # ELOOP
    weird = os.fsencode(root / "images") + b"/caf\xe9.jpg"  # a Latin-1 name: not valid UTF-8
    with open(weird, "wb") as f:
        f.write(_jpeg())
    with open(os.fsencode(root / "labels") + b"/caf\xe9.txt", "wb") as f:
        f.write(b"0 0.5 0.5 0.2 0.2\n")
    os.symlink("..", root / "images" / "parent")  # a folder link back up: walking must not loop
    (root / "data.yaml").write_text("path: .\ntrain: images\nval: images\nnames: [thing]\n")
    return root / "data.yaml"


def test_scan_keeps_every_valid_image_and_lists_each_odd_one(odd_dataset):
    samples, report = scan_split(load_data_config(odd_dataset), "train", use_cache=False, progress=False)
    names = sorted(os.fsencode(s.path.name) for s in samples)
    assert names == sorted([b"caf\xe9.jpg", b"good.jpg", b"png_named.jpg", b"trailer.jpg"])
    assert all(len(s.classes) == 1 for s in samples)  # their labels came with them
    kinds = {(Path(i.file).name, i.kind) for i in report.issues}
    assert ("trailer.jpg", "trailing_data") in kinds and ("png_named.jpg", "wrong_suffix") in kinds
    assert ("truncated.jpg", "corrupt_image") in kinds and ("bomb.png", "too_large") in kinds
    assert ("loop.jpg", "unreadable") in kinds
    text = "\n".join(report.lines(10))
    assert "60000x60000" in text
    text.encode("utf-8")  # every issue prints on a UTF-8 terminal, whatever the file names


@pytest.mark.parametrize("cli", ["detect.data", "analysis"])
def test_clis_scan_the_odd_folder_without_traceback(odd_dataset, tmp_path, cli):
    r = _run("-m", cli, "--data", str(odd_dataset), "--out", str(tmp_path / cli))
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.returncode == 0, r.stderr[-2000:]


def test_predict_on_a_folder_with_odd_names_does_not_crash(odd_dataset, tmp_path):
    model = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["thing"]), model)
    out = tmp_path / "pred"
    r = run_cli("detect.predict", "--weights", model, "--source", odd_dataset.parent / "images", "--img", "64",
                "--out", out, "--json", out / "d.json", "--save-images")  # an escaping exception fails the test
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    labels = sorted(os.fsencode(p.name) for p in (out / "labels").rglob("*.txt"))
    assert b"caf\xe9.txt" in labels and b"good.txt" in labels
    assert "skipped:" in r.stdout and "truncated.jpg" in r.stdout


def test_colliding_stems_get_distinct_outputs(tmp_path):
    src = tmp_path / "src"
    for rel, data in (("a/img.jpg", _jpeg()), ("b/img.jpg", _jpeg()), ("a/img.png", _png())):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    model = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["thing"]), model)
    out = tmp_path / "out"
    r = run_cli("detect.predict", "--weights", model, "--source", src, "--img", "64", "--conf", "0", "--out", out,
                "--json", out / "d.json", "--save-images")  # in this process: the subprocess runs are above
    assert r.returncode == 0, r.stderr
    labels = sorted(str(p.relative_to(out / "labels")) for p in (out / "labels").rglob("*.txt"))
    assert labels == ["a/img.jpg.txt", "a/img.png.txt", "b/img.txt"]
    images = sorted(str(p.relative_to(out)) for p in out.rglob("img*") if p.parent.name != "labels"
                    and "labels" not in p.parts)
    assert images == ["a/img.jpg", "a/img.png", "b/img.jpg"]
    import json

    assert {d["file_name"] for d in json.loads((out / "d.json").read_text())} == {"a/img.jpg", "a/img.png", "b/img.jpg"}


def test_corrupt_cache_is_rebuilt_with_one_warning(tmp_path, tiny_synthetic, monkeypatch, capsys):
    monkeypatch.setenv("DETECT_CACHE", str(tmp_path / "cache"))
    cfg = load_data_config(tiny_synthetic)
    first, _ = scan_split(cfg, "train", progress=False)
    (cache,) = (tmp_path / "cache").glob("labels-*.npz")
    for damage in (b"", cache.read_bytes()[:100]):  # 0-byte, then truncated
        cache.write_bytes(damage)
        again, _ = scan_split(cfg, "train", progress=False)
        assert [s.path for s in again] == [s.path for s in first]
        assert capsys.readouterr().err.count("is unreadable") == 1
    assert cache.stat().st_size > 100  # rewritten


def test_label_bom_nonfinite_and_polygon(tmp_path):
    f = tmp_path / "a.txt"
    f.write_bytes("\ufeff0 0.5 0.5 0.2 0.2\n0 nan 0.5 0.2 0.2\n0 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n".encode())
    report = LabelReport()
    classes, boxes = parse_yolo_label(f, 1, report)
    assert len(classes) == 2  # the BOM line and the polygon
    assert np.allclose(boxes[1], [0.2, 0.25, 0.2, 0.3])
    kinds = {(i.kind, i.line) for i in report.issues}
    assert kinds == {("non_finite", 2), ("polygon", 3)}
    assert "non-finite" in str(report.issues[0])


@pytest.mark.parametrize(
    "text, field",
    [
        ("nc: eighty\nnames: [a]\ntrain: images\n", "'nc' must be a whole number"),
        ("names: {a: x}\ntrain: images\n", "class indices as keys"),
        ("path: 5\nnames: [a]\ntrain: images\n", "'path' must be a folder path"),
        ("names: [a]\ntrain: 7\n", "'train' must be a path"),
        ("names: [[a]]\ntrain: images\n", "every entry of 'names'"),
    ],
)
def test_data_yaml_type_errors_name_their_field(tmp_path, text, field):
    (tmp_path / "images").mkdir()
    (tmp_path / "d.yaml").write_text(text)
    with pytest.raises(DataError, match=field):
        load_data_config(tmp_path / "d.yaml")


def test_non_utf8_yaml_is_one_line(tmp_path):
    (tmp_path / "d.yaml").write_bytes(b"names: [caf\xe9]\ntrain: images\n")
    r = run_cli("detect.data", "--data", tmp_path / "d.yaml", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not UTF-8" in r.stderr, r.stderr


def _bad_weights(tmp_path) -> dict[str, Path]:
    good = make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["thing"])
    cases = {}
    (tmp_path / "garbage.onnx").write_bytes(b"\x00\x01 not protobuf \xff" * 10)
    cases["garbage.onnx"] = tmp_path / "garbage.onnx"
    (tmp_path / "dir.onnx").mkdir()
    cases["dir.onnx"] = tmp_path / "dir.onnx"
    no_arch = dict(good)
    del no_arch["arch"]
    atomic_save(no_arch, tmp_path / "no_arch.pt")
    cases["no_arch.pt"] = tmp_path / "no_arch.pt"
    atomic_save({**good, "names": None}, tmp_path / "names_none.pt")
    cases["names_none.pt"] = tmp_path / "names_none.pt"
    return cases


@pytest.mark.parametrize("name", ["garbage.onnx", "dir.onnx", "no_arch.pt", "names_none.pt"])
@pytest.mark.parametrize("cli", ["detect.val", "detect.predict", "deploy.bench"])
def test_bad_weights_are_one_line_and_exit_2(tmp_path, tiny_synthetic, name, cli):
    w = _bad_weights(tmp_path)[name]
    extra = {"detect.val": ["--data", str(tiny_synthetic), "--img", "64"],
             "detect.predict": ["--source", str(tiny_synthetic.parent / "images" / "val"), "--img", "64",
                                "--out", str(tmp_path / "p")],
             "deploy.bench": ["--img", "64", "64", "--iters", "1", "--warmup", "0"]}[cli]
    r = run_cli(cli, "--weights", str(w), *extra)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and name in lines[0], r.stderr


@pytest.mark.parametrize(
    "cli, args, expect",
    [
        ("detect.val", ["--img", "0"], "--img 0"),
        ("detect.val", ["--img", "-64"], "--img -64"),
        ("detect.val", ["--conf", "1.5"], "--conf 1.5"),
        ("detect.val", ["--batch", "0"], "--batch 0"),
        ("detect.predict", ["--img", "0"], "--img 0"),
        ("detect.predict", ["--iou", "0"], "--iou 0"),
        ("detect.train", ["--img", "0"], "--img must be at least 32"),
        ("detect.train", ["--epochs", "0"], "--epochs must be at least 1"),
        ("deploy.export", ["--img", "0", "640"], "--img 0"),
        ("prune", ["--ratio", "0.5", "--batch", "0"], "--batch 0"),
    ],
)
def test_out_of_range_numbers_exit_2(tmp_path, tiny_synthetic, cli, args, expect):
    common = {"detect.val": ["--weights", "x.pt", "--data", str(tiny_synthetic)],
              "detect.predict": ["--weights", "x.pt", "--source", str(tiny_synthetic.parent)],
              "detect.train": ["--data", str(tiny_synthetic), "--out", str(tmp_path / "t")],
              "deploy.export": ["--weights", "x.pt", "--out", str(tmp_path / "e")],
              "prune": ["--weights", "x.pt", "--data", str(tiny_synthetic), "--out", str(tmp_path / "p")]}[cli]
    r = run_cli(cli, *common, *args)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and expect in lines[0], r.stderr


def test_onnx_with_a_fixed_shape_refuses_another_img(tmp_path, tiny_synthetic):
    model = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=12)), [str(i) for i in range(12)]), model)
    r = run_cli("deploy.export", "--weights", model, "--img", "64", "96", "--out", tmp_path / "x")
    assert r.returncode == 0, r.stderr
    r = run_cli("detect.val", "--weights", tmp_path / "x" / "model.onnx", "--data", tiny_synthetic, "--img", "64")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "64x96" in lines[0] and "--img 96" in lines[0], r.stderr


def test_checkpoints_and_exports_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["a"]), tmp_path / "c.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "c.pt").stat().st_mode) == 0o644


def test_image_decoding_reads_any_name(tmp_path):
    from detect.data.images import decode_image, safe_name

    name = os.fsencode(tmp_path) + b"/\xff\xfe.jpg"
    with open(name, "wb") as f:
        f.write(_jpeg((20, 10)))
    path = Path(os.fsdecode(name))
    assert decode_image(path).shape == (10, 20, 3)
    assert "\\xff\\xfe" in safe_name(path)


def test_exports_are_atomic_and_follow_the_umask(tmp_path):
    from deploy.export import export

    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["a"]), ckpt)
    old = os.umask(0o022)
    try:
        done = export(ckpt, tmp_path / "x", (64, 64))
        fp32, fp16 = done.fp32, done.fp16
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in (fp32, fp16)} == {0o644}
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["model.onnx", "model_fp16.onnx"]  # no temp left


def test_building_the_augmentations_asks_nothing_of_the_network():
    """albumentations' import asks pypi.org for a newer release unless told not to; on an offline GPU machine
    every training run printed the failure. In a fresh process, where the import really happens."""
    code = """
import urllib.request
asked = []
urllib.request.OpenerDirector.open = lambda self, url, *a, **k: asked.append(getattr(url, "full_url", url))
from detect.data.augment import build_albumentations
from detect.hyp import load_hyp
build_albumentations(load_hyp())
print("asked", asked)
"""
    r = _run("-c", code, env={"NO_ALBUMENTATIONS_UPDATE": ""})  # unset: albumentations would ask
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "asked []", r.stdout


def test_a_missing_package_is_one_line_naming_it(tmp_path, monkeypatch):
    """A requirement missing from the environment (ensemble-boxes was, on a GPU host's own Python) is one line
    naming the package and the fix, exit 2: not a ModuleNotFoundError traceback."""
    model = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=1)), ["thing"]), model)
    image = tmp_path / "a.jpg"
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(image)
    second = tmp_path / "m2.pt"
    second.write_bytes(model.read_bytes())
    monkeypatch.setitem(sys.modules, "ensemble_boxes", None)  # what an import of a package not installed meets
    r = run_cli("detect.predict", "--weights", model, second, "--source", image, "--img", "64",
                "--fuse", "wbf", "--out", tmp_path / "out")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "'ensemble_boxes'" in lines[0] and "pip install -r requirements.txt" in lines[0]
