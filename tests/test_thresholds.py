"""One confidence threshold per class: thresholds.json by name, the filter, and detect.predict --conf-per-class."""

from __future__ import annotations

import json

import pytest
import torch

from detect.errors import UsageError
from detect.infer.thresholds import keep_above, load_thresholds, lowest_threshold, write_thresholds
from tests.clirun import run_cli
from tests.conftest import shared_path


def test_thresholds_match_by_name_and_unlisted_classes_take_the_default(tmp_path):
    path = write_thresholds(tmp_path / "t.json", ["Person", "car", "dog"], [0.6, None, 0.2], 0.3, "hand-made")
    assert load_thresholds(path, ["dog", "person", "car", "cat"]).tolist() == pytest.approx([0.2, 0.6, 0.3, 0.3])
    assert lowest_threshold(path) == 0.2
    det = torch.tensor([[0, 0, 1, 1, 0.5, 0], [0, 0, 1, 1, 0.7, 0], [0, 0, 1, 1, 0.25, 1], [0, 0, 1, 1, 0.3, 1],
                        [0, 0, 1, 1, 0.2, 2]])
    kept = keep_above(det, torch.tensor([0.6, 0.3, 0.2]))
    assert kept[:, 4].tolist() == pytest.approx([0.7, 0.3, 0.2])  # each row against its own class's threshold


@pytest.mark.parametrize("content, words", [
    ({"default": 0.3, "classes": {"zebra": 0.5}}, "zebra"),
    ({"default": 0.3, "classes": {"person": 1.5}}, "person: a threshold in [0, 1]"),
    ({"person": 0.5}, "expected"),
])
def test_a_bad_thresholds_file_says_what_is_wrong(tmp_path, content, words):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UsageError, match=None) as e:
        load_thresholds(path, ["person", "car"])
    assert words in str(e.value) and str(path) in str(e.value)


def test_predict_conf_per_class_filters_as_the_file_says(tmp_path):
    weights, images = shared_path("weights/yolov5n.pt"), shared_path("images")
    plain = run_cli("detect.predict", "--weights", weights, "--source", images, "--img", "320", "--conf", "0.25",
                    "--out", tmp_path / "a", "--json", tmp_path / "a.json")
    assert plain.returncode == 0, plain.stderr
    (tmp_path / "t.json").write_text(json.dumps({"default": 0.25, "classes": {"person": 0.7}}))
    r = run_cli("detect.predict", "--weights", weights, "--source", images, "--img", "320", "--conf-per-class",
                tmp_path / "t.json", "--out", tmp_path / "b", "--json", tmp_path / "b.json")
    assert r.returncode == 0 and "person 0.700" in r.stdout, r.stderr
    a, b = (json.loads((tmp_path / f"{x}.json").read_text()) for x in "ab")
    assert all(d["score"] >= 0.7 for d in b if d["category_id"] == 0) and any(d["category_id"] == 0 for d in b)
    assert sorted(d["score"] for d in b if d["category_id"] != 0) == sorted(d["score"] for d in a if d["category_id"] != 0)
    assert len([d for d in b if d["category_id"] == 0]) < len([d for d in a if d["category_id"] == 0])
