import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from detect.data.config import load_data_config
from detect.data.labels import scan_split
from detect.metrics import coco_ground_truth, evaluate
from detect.model import build_model, default_arch
from detect.weights import atomic_save, make_checkpoint
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
# Measured by this implementation, recorded in docs/BENCHMARKS.md (yolov5n.pt, coco128 val, img 640).
COCO128_YOLOV5N = {"map50": 0.523, "map50_95": 0.343}


def _gt_as_detections(samples, jitter=0.0, score=0.9):
    rng = np.random.default_rng(0)
    dets = []
    for i, s in enumerate(samples):
        for c, (cx, cy, w, h) in zip(s.classes.tolist(), s.boxes.tolist()):
            bw, bh = w * s.width, h * s.height
            x, y = (cx - w / 2) * s.width + jitter * bw * rng.uniform(-1, 1), (cy - h / 2) * s.height
            dets.append({"image_id": i, "category_id": c, "bbox": [x, y, bw, bh], "score": score})
    return dets


def test_metrics_perfect_and_degraded(tiny_synthetic):
    cfg = load_data_config(tiny_synthetic)
    samples, _ = scan_split(cfg, "train", progress=False)
    gt = coco_ground_truth(samples, cfg.names)
    perfect = evaluate(gt, _gt_as_detections(samples), cfg.names)
    assert perfect["map50"] == pytest.approx(1.0) and perfect["map50_95"] == pytest.approx(1.0)
    assert perfect["precision"] == pytest.approx(1.0) and perfect["recall"] == pytest.approx(1.0)
    present = [r for r in perfect["per_class"] if r["instances"]]
    assert all(r["map50_95"] == pytest.approx(1.0) for r in present)
    assert sum(r["instances"] for r in perfect["per_class"]) == sum(len(s.classes) for s in samples)
    shifted = evaluate(gt, _gt_as_detections(samples, jitter=0.3), cfg.names)
    assert shifted["map50_95"] < 0.9 and shifted["map50"] <= 1.0
    kept = _gt_as_detections(samples)[::2]
    half = evaluate(gt, kept, cfg.names)
    # Every kept detection is right: precision 1 for classes that kept any, 0 for those that kept none.
    present = [c for c, r in enumerate(half["per_class"]) if r["instances"]]
    expected_p = np.mean([1.0 if any(d["category_id"] == c for d in kept) else 0.0 for c in present])
    assert half["precision"] == pytest.approx(expected_p) and 0.3 < half["recall"] < 0.7
    assert evaluate(gt, [], cfg.names)["map50"] == 0.0


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory):
    from detect.data.synthetic import CLASSES

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "untrained.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), path)
    return path


def test_val_cli_on_tiny_synthetic(tmp_path, tiny_synthetic, untrained_ckpt):
    out = tmp_path / "m.json"
    r = _run(
        "-m",
        "detect.val",
        "--weights",
        str(untrained_ckpt),
        "--data",
        str(tiny_synthetic),
        "--img",
        "320",
        "--batch",
        "2",
        "--workers",
        "0",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    assert {"map50", "map50_95", "precision", "recall", "per_class", "speed_ms", "map_small", "map_medium", "map_large"} <= m.keys()
    assert set(m["speed_ms"]) == {"pre", "inference", "nms", "total"} and m["images"] == 2
    assert 0 <= m["map50_95"] <= m["map50"] <= 1 and len(m["per_class"]) == 12
    assert "Class" in r.stdout and "Speed:" in r.stdout


@pytest.mark.slow
def test_val_yolov5n_on_coco128(tmp_path, yolov5n_pt, coco128):
    """In this process: the figures are the point; test_val_cli_on_tiny_synthetic starts the CLI for real."""
    out = tmp_path / "m.json"
    r = run_cli(
        "detect.val",
        "--weights",
        str(yolov5n_pt),
        "--data",
        str(coco128),
        "--img",
        "640",
        "--batch",
        "16",
        "--json",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    m = json.loads(out.read_text())
    for key, ref in COCO128_YOLOV5N.items():
        assert m[key] == pytest.approx(ref, abs=0.005), (key, m[key])


def test_predict_on_demo_photos(tmp_path, yolov5n_pt):
    from tests.conftest import shared_path

    images = shared_path("images")
    out = tmp_path / "pred.json"
    r = _run(
        "-m",
        "detect.predict",
        "--weights",
        str(yolov5n_pt),
        "--source",
        str(images),
        "--out",
        str(tmp_path),
        "--json",
        str(out),
        "--save-images",
        "--device",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    dets = json.loads(out.read_text())
    assert all(set(d) == {"file_name", "category_id", "bbox", "score"} for d in dets)
    bus = [d for d in dets if d["file_name"] == "bus.jpg"]
    zidane = [d for d in dets if d["file_name"] == "zidane.jpg"]
    assert sum(d["category_id"] == 0 for d in bus) >= 3 and any(d["category_id"] == 5 for d in bus)
    assert sum(d["category_id"] == 0 and d["score"] > 0.4 for d in zidane) == 2
    for d in zidane:  # original pixels: inside the 720x1280 photo
        x, y, w, h = d["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 1280.01 and y + h <= 720.01 and d["score"] >= 0.25
    assert (tmp_path / "bus.jpg").is_file() and (tmp_path / "labels" / "zidane.txt").read_text().count("\n") == len(
        zidane
    )


def test_predict_1080x1920_runs_at_384x640(untrained_ckpt):
    from detect.backend import TorchBackend
    from detect.predict import detect_image

    backend = TorchBackend(untrained_ckpt, torch.device("cpu"))
    seen = []
    call = backend.__call__

    class Spy:
        stride, fixed_shape, names = backend.stride, None, backend.names

        def __call__(self, x):
            seen.append(tuple(x.shape))
            return call(x)

    img = np.full((1080, 1920, 3), 90, np.uint8)
    det, lb = detect_image(Spy(), img, 640, conf=0.0001, iou=0.45, max_det=50)
    assert seen == [(1, 3, 384, 640)] and lb.pad == (0, 12)
    assert len(det) and float(det[:, [0, 2]].max()) <= 1920 and float(det[:, [1, 3]].max()) <= 1080


@pytest.mark.parametrize("case", ["weights", "data", "names", "empty_images", "empty_source", "model"])
def test_bad_input_one_line_exit_2(tmp_path, case, untrained_ckpt, tiny_synthetic):
    (tmp_path / "empty").mkdir()
    if case == "weights":
        args = ["-m", "detect.val", "--weights", str(tmp_path / "no.pt"), "--data", str(tiny_synthetic)]
        expect = "no such weights file"
    elif case == "data":
        args = ["-m", "detect.val", "--weights", str(untrained_ckpt), "--data", str(tmp_path / "no.yaml")]
        expect = "no such data file"
    elif case == "names":
        (tmp_path / "d.yaml").write_text("train: empty\n")
        args = ["-m", "detect.val", "--weights", str(untrained_ckpt), "--data", str(tmp_path / "d.yaml")]
        expect = "no 'names' entry"
    elif case == "empty_images":
        (tmp_path / "d.yaml").write_text("val: empty\nnames: [a]\n")
        args = ["-m", "detect.val", "--weights", str(untrained_ckpt), "--data", str(tmp_path / "d.yaml")]
        expect = "has no images"
    elif case == "empty_source":
        args = ["-m", "detect.predict", "--weights", str(untrained_ckpt), "--source", str(tmp_path / "empty")]
        expect = "no images found"
    else:
        args = ["-m", "detect.model", "--model", "yolov5q"]
        expect = "unknown model 'yolov5q'"
    r = run_cli(*args[1:])  # in this process (tests/clirun.py); the subprocess end-to-end tests are above
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expect in lines[0], r.stderr
