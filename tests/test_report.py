"""The validation report's numbers on hand-made cases, and its CLI end to end."""

import json
from pathlib import Path

import numpy as np
import pytest

from detect.metrics import as_arrays
from detect.metrics.matching import match
from detect.report.errors import ap_by_attribute, confusion_matrix, image_errors
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]


def _gt(boxes):
    """COCO ground truth for [(image, class, [x, y, w, h])]."""
    images = sorted({b[0] for b in boxes} | {0, 1, 2})
    return {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": 100, "width": 100} for i in images],
        "annotations": [
            {"id": k + 1, "image_id": i, "category_id": c, "iscrowd": 0, "bbox": b, "area": b[2] * b[3]}
            for k, (i, c, b) in enumerate(boxes)
        ],
        "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}],
    }


def _dets(rows):
    return [{"image_id": i, "category_id": c, "bbox": b, "score": s} for i, c, b, s in rows]


def test_confusion_matrix_hand_case():
    gt = _gt([(0, 0, [0, 0, 20, 20]), (0, 1, [40, 0, 20, 20]), (0, 1, [0, 60, 20, 20])])
    dets = _dets([
        (0, 0, [0, 0, 20, 20], 0.9),  # right
        (0, 0, [41, 0, 20, 20], 0.8),  # an "a" on the "b": a confusion
        (0, 1, [70, 70, 20, 20], 0.7),  # a "b" on nothing: false
        (0, 1, [0, 60, 20, 20], 0.1),  # below the confidence: the third object counts as missed
    ])
    g, d = as_arrays(gt, dets)
    m = confusion_matrix(g, d, 2, conf=0.25, iou=0.45)
    # rows predicted (a, b, background), columns true (a, b, background)
    assert m.tolist() == [[1, 1, 0], [0, 0, 1], [0, 1, 0]]
    errors = image_errors(g, d, match(g, d, 0.5, 100), 0.25, 3)
    worst = errors[0]
    assert worst["image"] == 0 and sorted(worst["missed"]) == [1, 2] and sorted(worst["false"]) == [1, 2]
    assert worst["confused"] == {1: 1}  # detection 1 ("a") covers an object of class 1 ("b")


def test_ap_per_scene_fixture():
    gt = _gt([(0, 0, [0, 0, 20, 20]), (1, 0, [10, 10, 30, 30]), (2, 1, [50, 50, 20, 20])])
    dets = _dets([(0, 0, [0, 0, 20, 20], 0.9), (2, 1, [50, 50, 20, 20], 0.8)])  # image 1 (scene "night") missed
    rows = ap_by_attribute(gt, dets, ["day", "night", "day"])
    assert [r["value"] for r in rows] == ["day", "night"]
    assert rows[0]["map50_95"] == pytest.approx(1.0) and rows[0]["images"] == 2 and rows[0]["instances"] == 2
    assert rows[1]["map50_95"] == pytest.approx(0.0) and rows[1]["instances"] == 1


def test_val_report_cli_with_scenes(tiny_synthetic, tmp_path):
    import torch

    from detect.data.synthetic import CLASSES, SCENES
    from detect.model import build_model, default_arch
    from detect.weights import atomic_save, make_checkpoint

    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=len(CLASSES)))
    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(model, CLASSES), ckpt)
    out = tmp_path / "report"
    r = run_cli("detect.val", "--weights", ckpt, "--data", tiny_synthetic, "--split", "train", "--img", "320",
                "--workers", "0", "--conf", "0.0001", "--report", out, "--json", tmp_path / "m.json")  # in this process
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    scenes = rep["by_attribute"]["scene"]  # meta.csv beside data.yaml is found by itself
    assert sum(s["images"] for s in scenes) == 10 and {s["value"] for s in scenes} <= set(SCENES)
    cm = np.array(rep["confusion_matrix"]["matrix"])
    assert cm.shape == (13, 13) and cm[:, :12].sum() == sum(c["instances"] for c in rep["per_class"])
    for f in ("report.html", "confusion_matrix.png", "pr_curve.png", "f1_curve.png", "ap_per_class.png", "ap_per_scene.png"):
        assert (out / f).is_file(), f
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "AP per scene" in html and "Worst images" in html
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"map_small", "map_medium", "map_large"} <= m.keys()
    thresholds = json.loads((out / "thresholds.json").read_text())  # for detect.predict --conf-per-class
    assert thresholds["default"] == pytest.approx(rep["conf_threshold"], abs=1e-4)
    assert thresholds["classes"] == {c["class"]: None if c["best_conf"] is None else round(c["best_conf"], 4)
                                     for c in rep["per_class"]}
