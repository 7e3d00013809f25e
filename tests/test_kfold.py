"""k-fold: folds stratified and whole per group; out-of-fold detections for every image once; resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detect.errors import UsageError
from detect.kfold.split import assign_folds, presence
from tests.clirun import run_cli


def _labels(rng, n: int = 300) -> np.ndarray:
    """A skewed set: class 0 in 76% of images, class 3 in 4%."""
    return (rng.random((n, 4)) < np.array([0.76, 0.3, 0.1, 0.04])).astype(np.int64)


def test_folds_are_disjoint_cover_every_image_and_keep_class_shares():
    labels = _labels(np.random.default_rng(0))
    folds = assign_folds(labels, 5, seed=1)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4] and len(folds) == len(labels)  # each image in one fold
    overall = labels.mean(0)
    for k in range(5):
        share = labels[folds == k].mean(0)
        assert np.all(np.abs(share - overall) <= 0.03), (k, share, overall)  # rare class 3 included
        assert abs((folds == k).sum() - len(labels) / 5) <= 3


def test_a_group_never_spans_two_folds():
    rng = np.random.default_rng(2)
    labels = _labels(rng, 200)
    groups = [f"video{i // 7}" for i in range(200)]  # 29 videos of up to 7 frames
    folds = assign_folds(labels, 3, seed=0, groups=groups)
    for g in set(groups):
        assert len({int(f) for f, h in zip(folds, groups) if h == g}) == 1, g
    assert min(np.bincount(folds)) > 40
    with pytest.raises(UsageError, match="only 2 groups"):
        assign_folds(labels[:10], 3, groups=["a"] * 5 + ["b"] * 5)


def test_presence_marks_classes_and_scene():
    p = presence([np.array([0, 0, 2]), np.array([], int)], 3, ["street", None])
    assert p.tolist() == [[1, 0, 1, 1], [0, 0, 0, 0]]


def test_two_folds_predict_every_image_once_and_resume_without_training(tmp_path, tiny_synthetic, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # a relative --out, as the CLI's default runs/kfold is
    args = ["--data", tiny_synthetic, "--folds", "2", "--model", "yolov5n", "--img", "64", "--batch", "2", "--epochs",
            "1", "--workers", "0", "--device", "cpu", "--set", "warmup_epochs=0", "nominal_batch=2", "--out", tmp_path.name]
    r = run_cli("detect.kfold", *args)
    assert r.returncode == 0, r.stderr
    oof = json.loads((tmp_path / "oof.json").read_text())
    files = [x["file_name"] for x in oof["images"]]
    assert len(files) == len(set(files)) == 10 and {x["fold"] for x in oof["images"]} == {0, 1}
    fold_of = {x["file_name"]: x["fold"] for x in oof["images"]}
    held = {k: set((tmp_path / f"fold{k}/val.txt").read_text().split()) for k in (0, 1)}
    assert not held[0] & held[1] and len(held[0] | held[1]) == 10
    for k, paths in held.items():  # each fold's held-out list is what oof.json says that fold held out
        assert all(fold_of[next(n for n in fold_of if path.endswith(n))] == k for path in paths)
    assert all({"file_name", "category_id", "bbox", "score"} == d.keys() for d in oof["detections"])
    assert {d["file_name"] for d in oof["detections"]} <= set(files)
    metrics = json.loads((tmp_path / "oof_metrics.json").read_text())
    assert metrics["images"] == 10 and len(metrics["per_fold"]) == 2 and "map50_95" in metrics["oof"]
    assert len((tmp_path / "ensemble.txt").read_text().split()) == 2 and (tmp_path / "thresholds.json").is_file()
    stamp = (tmp_path / "fold0/run/weights/best.pt").stat().st_mtime_ns
    again = run_cli("detect.kfold", *args)
    assert again.returncode == 0 and again.stdout.count("not trained again") == 2, again.stdout
    assert (tmp_path / "fold0/run/weights/best.pt").stat().st_mtime_ns == stamp
    three = list(args)
    three[three.index("--folds") + 1] = "3"
    other = run_cli("detect.kfold", *three)
    assert other.returncode == 2 and "folds 2 (asked 3)" in other.stderr, other.stderr  # not a 2-fold split reused
