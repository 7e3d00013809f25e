"""recommended.yaml: each rule fires on a summary made to trigger it, and the file loads into a training config."""

from __future__ import annotations

import pytest
import yaml

from analysis.recipe import recipe, recipe_yaml
from analysis.recommend import recommend
from detect.errors import UsageError
from detect.hyp import load_hyp, train_options
from detect.train.config import config_from_args, parse_args


def summary(small=0.0, imbalance=2.0, head_share=0.3, cut=0.1, default_bpr=1.0, fitted_bpr=None, crowded=0.0):
    """The parts of analysis's summary.json the rules read, neutral unless asked."""
    s = {
        "image_sizes": {"orientation": {"landscape": 1.0}},
        "box_sizes": {"coco_at_input": {"small": small}, "coco_native": {"small": small / 2}},
        "classes": {"imbalance_ratio": imbalance, "head_class": "person", "head_share": head_share,
                    "counts": {"person": 800, "shorts": 800 / imbalance}},
        "mosaic_cut_share": cut,
        "anchors": {"default": {"bpr": default_bpr}},
        "occlusion": {"share_boxes_same_class_iou_gt_0.5": crowded},
    }
    if fitted_bpr is not None:
        s["anchors"]["fitted"] = {"bpr": fitted_bpr}
    return s


def lines(**kw):
    hw = [(1080, 1920)] * 9 + [(1080, 1440)]
    hyp, train, notes = recipe(recommend(summary(**kw), hw, 640), 640, 1920)
    return {k: v for k, v, _ in hyp}, {k: v for k, v, _ in train}, notes


def test_neutral_data_gets_no_hyperparameter_and_its_size():
    hyp, train, notes = lines()
    assert hyp == {} and train == {"img": 640}
    assert notes and notes[0].startswith("input_shape: 384x640 (90% of images letterbox to 384x640")


@pytest.mark.parametrize("kw,hyp,train", [
    ({"small": 0.5}, {"slice": True, "slice_window": 1280, "slice_min_visible": 0.6}, {"val_img": 960}),
    ({"imbalance": 17.0}, {"class_balanced": True}, {}),
    ({"cut": 0.87}, {"mosaic": 0.5}, {}),
    ({"default_bpr": 0.9, "fitted_bpr": 0.99}, {}, {"anchors": "anchors.yaml"}),
])
def test_each_rule_fires_on_its_trigger(kw, hyp, train):
    got_hyp, got_train, _ = lines(**kw)
    assert got_hyp == hyp and got_train == {"img": 640, **train}


def test_focal_loss_advice_is_a_comment_it_lost_where_measured():
    hyp, _, notes = lines(head_share=0.76)
    assert "fl_gamma" not in hyp and any(n.startswith("focal_loss: not applied") for n in notes)


def test_crowding_is_read_within_a_class():
    assert not any(n.startswith("nms_iou") for n in lines(crowded=0.01)[2])  # garments inside their wearer
    assert any(n.startswith("nms_iou: 0.6 (30% of boxes overlap one of their own class") for n in lines(crowded=0.3)[2])


def test_recommended_yaml_loads_into_a_training_config(tmp_path, capsys):
    recs = recommend(summary(small=0.5, imbalance=17.0, head_share=0.76, cut=0.87, default_bpr=0.9, fitted_bpr=0.99),
                     [(1080, 1920)] * 10, 320)
    path = tmp_path / "analysis" / "recommended.yaml"
    path.parent.mkdir()
    path.write_text(recipe_yaml(recs, 320, 1920, "d.yaml"))
    raw = yaml.safe_load(path.read_text())
    assert "fl_gamma" not in raw and raw["train"] == {"img": 320, "val_img": 960, "anchors": "anchors.yaml"}
    hyp = load_hyp(path)
    assert (hyp.slice, hyp.slice_window, hyp.class_balanced, hyp.mosaic) == (True, 640, True, 0.5)
    cfg = config_from_args(parse_args(["--data", "d.yaml", "--hyp", str(path)]))
    assert (cfg.img, cfg.val_img, cfg.anchors) == (320, 960, str(path.parent / "anchors.yaml"))
    assert cfg.hyp.fl_gamma == 0.0 and "img 320 (from" in capsys.readouterr().out
    cfg = config_from_args(parse_args(["--data", "d.yaml", "--hyp", str(path), "--img", "640"]))
    assert cfg.img == 640 and cfg.val_img == 960  # the command line wins, option by option


def test_a_bad_train_section_names_the_file_and_the_option(tmp_path):
    bad = tmp_path / "r.yaml"
    bad.write_text("lr0: 0.01\ntrain:\n  imgsz: 320\n")
    with pytest.raises(UsageError, match=r"r.yaml: train: unknown option\(s\) imgsz; accepted: img, val_img, anchors"):
        train_options(bad)
    bad.write_text("train:\n  img: big\n")
    with pytest.raises(UsageError, match="img must be a whole number"):
        train_options(bad)
