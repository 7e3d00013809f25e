"""Scoring a model on data whose classes it holds under other indices (detect.infer.classmap)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from detect.errors import UsageError
from detect.infer.classmap import ClassMappedBackend, for_data, match_classes


def test_match_by_name_any_case_in_the_data_order():
    cmap = match_classes(["person", "Bicycle", "car"], ["CAR", "person", "horse"])
    assert cmap.model_index == (2, 0, None)
    lines = cmap.lines()
    assert lines[0] == "  0 'CAR' <- model class 2 'car'" and "AP 0" in lines[2]
    assert lines[-1] == "  the model's other 1 classes are dropped before NMS"


def test_identical_names_or_generic_names_of_the_same_count_need_no_map():
    assert match_classes(["a", "B"], ["A", "b"]) is None
    assert match_classes(["class0", "class1"], ["cat", "dog"]) is None  # by index, as before


def test_refusals_are_usage_errors_naming_both_sides():
    with pytest.raises(UsageError, match="predicts 3 classes but d.yaml has 1, and no class name is shared"):
        match_classes(["cat", "dog", "cow"], ["person"], weights="m.pt", data="d.yaml")
    with pytest.raises(UsageError, match="without --no-class-map they are matched by name"):
        match_classes(["cat", "person"], ["person"], by_name=False)


def test_mapped_backend_keeps_box_and_objectness_and_picks_class_columns():
    class Fixed:
        names, stride, fixed_shape = ["person", "bicycle", "car"], 32, None

        def __call__(self, x):
            return torch.tensor([[[10.0, 20, 30, 40, 0.9, 0.1, 0.2, 0.7]]])

    out = ClassMappedBackend(Fixed(), match_classes(Fixed.names, ["car", "person", "horse"]))(torch.zeros(1))
    assert out.tolist() == [[pytest.approx([10.0, 20, 30, 40, 0.9, 0.7, 0.1, 0.0])]]
    plain = Fixed()
    assert for_data(plain, ["person", "bicycle", "car"]) is plain


@pytest.fixture(scope="module")
def person_only(tmp_path_factory, coco128):
    """16 coco128 val photos with their person boxes only, as a one-class data.yaml."""
    root = tmp_path_factory.mktemp("person-only")
    src = coco128.parent
    images = sorted((src / "images" / "val2017").glob("*.jpg"))[:16]
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for img in images:
        shutil.copy(img, root / "images" / img.name)
        label = src / "labels" / "val2017" / f"{img.stem}.txt"
        rows = label.read_text().splitlines() if label.is_file() else []
        (root / "labels" / f"{img.stem}.txt").write_text("".join(r + "\n" for r in rows if r.split()[0] == "0"))
    (root / "data.yaml").write_text("path: .\nval: images\nnames: [Person]\n")
    full = root / "full.yaml"  # the same photos with every class, for the 80-class reference
    full.write_text(f"path: {src}\nval: {root / 'all.txt'}\nnames: {json.dumps(_coco_names(coco128))}\n")
    (root / "all.txt").write_text("".join(f"{src / 'images' / 'val2017' / i.name}\n" for i in images))
    return root


def _coco_names(coco128):
    from detect.data.config import load_data_config

    return load_data_config(coco128).names


def test_val_scores_the_coco_model_on_a_person_only_set(tmp_path, capsys, person_only, yolov5n_pt):
    from detect import val

    mapped, dets = tmp_path / "mapped.json", tmp_path / "dets.json"
    assert val.main(["--weights", str(yolov5n_pt), "--data", str(person_only / "data.yaml"), "--device", "cpu",
                     "--workers", "0", "--json", str(mapped), "--save-detections", str(dets)]) == 0
    printed = capsys.readouterr().out
    assert "0 'Person' <- model class 0 'person'" in printed and "other 79 classes are dropped" in printed
    assert {d["category_id"] for d in json.loads(dets.read_text())} == {0}
    full = tmp_path / "full.json"
    assert val.main(["--weights", str(yolov5n_pt), "--data", str(person_only / "full.yaml"), "--device", "cpu",
                     "--workers", "0", "--json", str(full)]) == 0
    person = next(c for c in json.loads(full.read_text())["per_class"] if c["class"] == "person")
    m = json.loads(mapped.read_text())
    # the person column alone, before NMS: the 80-class run's person AP, which other classes never touch
    # except through its shared max_det
    assert m["map50_95"] == pytest.approx(person["map50_95"], abs=0.002) and m["map50_95"] > 0.3
    with pytest.raises(UsageError, match="without --no-class-map"):
        val.main(["--weights", str(yolov5n_pt), "--data", str(person_only / "data.yaml"), "--no-class-map"])


def test_predict_with_data_writes_the_data_classes(tmp_path, capsys, yolov5n_pt, person_only):
    from detect import predict
    from tests.conftest import shared_path

    out = tmp_path / "pred.json"
    assert predict.main(["--weights", str(yolov5n_pt), "--source", str(shared_path("images/bus.jpg")), "--device",
                         "cpu", "--out", str(tmp_path), "--json", str(out), "--data",
                         str(person_only / "data.yaml")]) == 0
    dets = json.loads(out.read_text())
    assert len(dets) >= 3 and {d["category_id"] for d in dets} == {0}  # the bus (class 5) is gone
    assert "0 'Person' <- model class 0 'person'" in capsys.readouterr().out
