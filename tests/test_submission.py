"""Submission files round-trip to the same boxes; predict matches official detect.py on the demo photos."""

import json
from pathlib import Path

import pytest

from detect.errors import DataError
from detect.submission import read_submission, write_submission
from tests.clirun import run_cli
from tests.conftest import shared_path

REPO = Path(__file__).resolve().parents[1]
RECORDS = [
    {"file_name": "sub/000000000139.jpg", "category_id": 0, "bbox": [10.25, 20.5, 30.0, 40.125], "score": 0.91234},
    {"file_name": "sub/000000000139.jpg", "category_id": 2, "bbox": [0.0, 0.0, 5.5, 6.5], "score": 0.001},
    {"file_name": "b c.png", "category_id": 1, "bbox": [100.0, 50.0, 20.0, 10.0], "score": 0.5},
]


def _xyxy(r):
    x, y, w, h = r["bbox"]
    return [x, y, x + w, y + h]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_submission_round_trip(tmp_path, suffix):
    path = tmp_path / f"sub{suffix}"
    write_submission(path, RECORDS, ["person", "bicycle", "car"])
    back = read_submission(path)
    assert len(back) == len(RECORDS)
    for rec, got in zip(RECORDS, back):
        assert got["xyxy"] == pytest.approx(_xyxy(rec), abs=1e-3) and got["score"] == pytest.approx(rec["score"], abs=1e-6)
        assert got["category_id"] == rec["category_id"]
    if suffix == ".csv":
        assert path.read_text().splitlines()[0] == "image,class,score,x1,y1,x2,y2"
        assert [b["image"] for b in back] == [r["file_name"] for r in RECORDS]
    else:  # no annotations file: numeric stems become ids, other names stay
        assert [b["image"] for b in back] == [139, 139, "b c.png"]


def test_json_submission_takes_ids_from_coco_annotations(tmp_path):
    ann = tmp_path / "instances.json"
    ann.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "000000000139.jpg"}, {"id": 9, "file_name": "b c.png"}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "bicycle"}, {"id": 3, "name": "car"}],
    }))
    path = tmp_path / "sub.json"
    write_submission(path, RECORDS, ["person", "bicycle", "car"], ann)
    back = read_submission(path)
    assert [b["image"] for b in back] == [7, 7, 9] and [b["category_id"] for b in back] == [1, 3, 2]
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "other.jpg"}], "categories": []}))
    with pytest.raises(DataError, match="not listed"):
        write_submission(path, RECORDS, ["person", "bicycle", "car"], ann)


def test_predict_matches_official_detect_py(yolov5n_pt):
    """Boxes of official YOLOv5 7.0.14 detect.py (recorded by benchmarks/predict_vs_official.py) on both photos."""
    import torch

    from detect.backend import TorchBackend
    from detect.data.dataset import load_image
    from detect.predict import detect_image

    ref = json.loads((REPO / "tests/fixtures/official_detect_yolov5n.json").read_text())["images"]
    backend = TorchBackend(yolov5n_pt, torch.device("cpu"))
    for name, expected in ref.items():
        det, lb = detect_image(backend, load_image(shared_path(f"images/{name}")), 640, 0.25, 0.45)
        assert list(lb.shape) == expected["network_shape"]
        assert len(det) == len(expected["boxes"]), name
        for box in expected["boxes"]:
            diff = (det[:, :4] - torch.tensor(box[:4])).abs().max(1).values
            i = int(diff.argmin())
            assert diff[i] < 0.05 and abs(float(det[i, 4]) - box[4]) < 0.002 and int(det[i, 5]) == box[5], (name, box)


def test_predict_cli_submission_slices_and_ensemble(yolov5n_pt, tmp_path):
    src = Path(shared_path("images/zidane.jpg")).parent
    sub = tmp_path / "sub.csv"
    r = run_cli("detect.predict", "--weights", yolov5n_pt, "--source", src, "--img", "640", "320", "--slice",
                "640x640", "--augment", "--out", tmp_path / "out", "--json", tmp_path / "d.json", "--submission", sub,
                "--conf", "0.25")  # in this process: predict's start-up is tested end to end in test_val_predict.py
    assert r.returncode == 0, r.stderr
    assert "TTA (3 passes), slices 640x640 overlap 0.2 merged by nmm, 2 members fused by wbf" in r.stdout
    dets = json.loads((tmp_path / "d.json").read_text())
    rows = read_submission(sub)
    assert len(rows) == len(dets) > 0
    for d, row in zip(dets, rows):  # the same boxes as --json, in original pixels
        assert row["image"] == d["file_name"] and row["xyxy"] == pytest.approx(_xyxy(d), abs=1e-3)
    import torch
    from torchvision.ops import box_iou

    players = torch.tensor([b[:4] for b in json.loads((REPO / "tests/fixtures/official_detect_yolov5n.json").read_text())
                            ["images"]["zidane.jpg"]["boxes"][:2]])
    people = torch.tensor([_xyxy(d) for d in dets if d["file_name"] == "zidane.jpg" and d["category_id"] == 0])
    assert (box_iou(players, people).max(1).values > 0.7).all()  # both players still found
