"""Pseudo-labels: thresholds reach the asked precision; uncertain boxes never become background; the CLI's set trains."""

from __future__ import annotations

import json

import numpy as np
import torch

from detect.pseudo.label import PseudoConfig, write_labels
from detect.pseudo.select import ClassThreshold, class_thresholds, cut
from tests.clirun import run_cli
from tests.conftest import shared_path


def test_cut_keeps_the_lowest_threshold_that_reaches_the_precision():
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    tp = np.array([1, 1, 0, 1, 1, 0, 0], bool)  # precision by cut: 1, 1, .67, .75, .8, .67, .57
    assert cut(scores, tp, 5, 0.75) == (0.6, 0.8, 0.8)  # not 0.9: the later, lower cut is also at >= 0.75
    assert cut(scores, tp, 5, 0.99) == (0.9, 1.0, 0.4)
    assert cut(scores, tp, 5, 0.5)[0] == 0.4
    assert cut(scores[2:3], tp[2:3], 1, 0.5)[0] == float("inf")  # never reached: no pseudo-boxes


def test_class_thresholds_per_class_on_matched_boxes():
    g = {"image": np.array([0, 0, 1]), "cls": np.array([0, 1, 0]),
         "xywh": np.array([[0, 0, 10, 10], [20, 20, 10, 10], [0, 0, 10, 10]], float)}
    d = {"image": np.array([0, 0, 1, 1, 0]), "cls": np.array([0, 0, 0, 0, 1]),
         "xywh": np.array([[0, 0, 10, 10], [50, 50, 5, 5], [0, 0, 10, 10], [60, 60, 5, 5], [20, 20, 10, 10]], float),
         "score": np.array([0.9, 0.8, 0.7, 0.3, 0.6])}
    person, other = class_thresholds(g, d, 2, precision=0.6, drop_precision=0.5)
    # class 0 by score: 0.9 hit, 0.8 miss, 0.7 hit, 0.3 miss -> precision 1, .5, .67, .5
    assert (person.keep, person.recall, person.instances) == (0.7, 1.0, 2) and person.drop == 0.3
    assert other.keep == 0.6 and other.precision == 1.0


class _Fixed:
    """A predictor stand-in: the same detections for each image, by file name."""

    def __init__(self, by_name):
        self.by_name, self.current = by_name, None

    def __call__(self, img):
        return torch.tensor(self.by_name[int(img[0, 0, 0])], dtype=torch.float32).reshape(-1, 6)


def test_an_image_with_an_uncertain_box_is_left_out_never_labelled_as_background(tmp_path):
    import cv2

    src = tmp_path / "src"
    src.mkdir()
    boxes = {10: [[0, 0, 20, 20, 0.95, 0]],  # certain: labelled
             20: [[0, 0, 20, 20, 0.95, 0], [30, 30, 40, 40, 0.6, 0]],  # one uncertain box: left out
             30: [[0, 0, 20, 20, 0.2, 0]],  # below drop: a background image
             40: [[0, 0, 20, 20, 0.95, 1], [30, 30, 40, 40, 0.6, 1]]}  # class 1: no keep threshold, 0.6 uncertain
    for v in boxes:
        cv2.imwrite(str(src / f"img{v}.png"), np.full((64, 64, 3), v, np.uint8))
    c = PseudoConfig(weights=["x"], source=str(src), data="d.yaml", out=tmp_path / "out", uncertain="leave-out")
    thresholds = [ClassThreshold(0.9, 0.5, 0.95, 0.6, 10), ClassThreshold(float("inf"), 0.5, 0.0, 0.0, 3)]
    counts = write_labels(c, _Fixed(boxes), thresholds)
    assert (counts["labelled"], counts["background"], counts["left_out"]) == (1, 1, 2)
    assert (tmp_path / "out/labels/img10.txt").read_text().split() == ["0", "0.156250", "0.156250", "0.312500", "0.312500"]
    assert (tmp_path / "out/labels/img30.txt").read_text() == ""
    assert not (tmp_path / "out/labels/img20.txt").exists() and not (tmp_path / "out/images/img20.png").exists()
    assert not (tmp_path / "out/labels/img40.txt").exists()


def test_with_ignore_an_uncertain_box_becomes_an_ignore_region_and_its_image_is_kept(tmp_path):
    import cv2

    from detect.data.labels import LabelReport, parse_yolo_label

    src = tmp_path / "src"
    src.mkdir()
    cv2.imwrite(str(src / "img20.png"), np.full((64, 64, 3), 20, np.uint8))
    boxes = {20: [[0, 0, 20, 20, 0.95, 0], [32, 16, 48, 48, 0.6, 0]]}  # one certain box, one uncertain
    c = PseudoConfig(weights=["x"], source=str(src), data="d.yaml", out=tmp_path / "out")  # ignore: the default
    counts = write_labels(c, _Fixed(boxes), [ClassThreshold(0.9, 0.5, 0.95, 0.6, 10)])
    assert (counts["labelled"], counts["left_out"], counts["ignore_regions"]) == (1, 0, 1)
    lines = (tmp_path / "out/labels/img20.txt").read_text().splitlines()
    assert [line.split() for line in lines] == [["0", "0.156250", "0.156250", "0.312500", "0.312500"],
                                                ["-1", "0.625000", "0.500000", "0.250000", "0.500000"]]
    report = LabelReport()
    classes, regions = parse_yolo_label(tmp_path / "out/labels/img20.txt", 1, report)
    assert classes.tolist() == [0, -1] and not report.issues  # read back: one object, one ignore region


def test_pseudo_cli_writes_a_set_that_trains_as_it_is(tmp_path, persons):
    weights = shared_path("weights/yolov5n.pt")
    source = shared_path("datasets/coco128/images/val2017")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for f in sorted(source.glob("*.jpg"))[:6]:
        (unlabelled / f.name).symlink_to(f)
    out = tmp_path / "pseudo"
    r = run_cli("detect.pseudo", "--weights", weights, "--source", unlabelled, "--data", persons, "--img", "320",
                "--precision", "0.8", "--out", out, "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "person: keep >=" in r.stdout and "precision" in r.stdout
    summary = json.loads((out / "pseudo.json").read_text())
    person = summary["classes"]["person"]
    assert person["val_precision"] >= 0.8 and person["keep"] > person["drop"]
    assert summary["labelled"] + summary["background"] + summary["left_out"] == 6
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split

    train, _ = scan_split(load_data_config(out / "data.yaml"), "train", progress=False)
    assert len(train) == 8 + summary["labelled"] + summary["background"]  # the labelled set plus the pseudo-labelled
    assert sum(len(s.classes) for s in train) >= person["boxes"]
