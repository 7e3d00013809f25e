"""faster-coco-eval against pycocotools, and our COCO matcher against pycocotools' own decisions."""

import contextlib
import copy
import io

import numpy as np
import pytest

from detect.metrics import as_arrays, coco_ground_truth, evaluate
from detect.metrics.coco import coco_eval
from detect.metrics.matching import box_iou_xywh, match


@pytest.fixture(scope="module")
def coco128_detections(yolov5n_pt, coco128):
    """yolov5n's detections on coco128 val at 320 (conf 0.001): the real case, a quarter of 640's time."""
    import torch

    from detect.backend import TorchBackend
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from detect.evaluate import EvalConfig, run_eval

    cfg = load_data_config(coco128)
    samples, _ = scan_split(cfg, "val", progress=False)
    _, dets = run_eval(TorchBackend(yolov5n_pt, torch.device("cpu")), samples, cfg.names,
                       EvalConfig(320, workers=0, progress=False))
    return coco_ground_truth(samples, cfg.names), dets, cfg.names


def test_faster_coco_eval_gives_pycocotools_stats(coco128_detections):
    gt, dets, _ = coco128_detections
    fast, fast_prec = coco_eval(gt, dets, engine="faster-coco-eval")
    ref, ref_prec = coco_eval(gt, dets, engine="pycocotools")
    assert len(fast) == len(ref) == 12
    np.testing.assert_allclose(fast, ref, atol=1e-4)
    np.testing.assert_allclose(fast_prec, ref_prec, atol=1e-4)


def test_matcher_equals_pycocotools_dtmatches(coco128_detections):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets, _ = coco128_detections
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
    tp, scored = set(), set()
    for e in ev.evalImgs:  # area "all", the last maxDets; loadRes numbers results from 1 in input order
        if e is None or e["aRng"] != ev.params.areaRng[0] or e["maxDet"] != 100:
            continue
        scored.update(i - 1 for i in e["dtIds"])
        tp.update(i - 1 for i, m in zip(e["dtIds"], e["dtMatches"][0]) if m > 0)
    m = match(*as_arrays(gt, dets), iou_thr=0.5, max_det=100)
    assert set(np.flatnonzero(m.tp)) == tp and set(np.flatnonzero(m.scored)) == scored and len(tp) > 500


def test_metrics_identical_through_either_engine(coco128_detections):
    gt, dets, names = coco128_detections
    a = evaluate(gt, dets, names, engine="faster-coco-eval")
    b = evaluate(gt, dets, names, engine="pycocotools")
    for k in ("map50", "map50_95", "precision", "recall", "map_small", "map_medium", "map_large"):
        assert a[k] == pytest.approx(b[k], abs=1e-4), k


def test_matcher_hand_case():
    # one image, one class: two objects; three detections by score: a duplicate, a hit, a miss
    gt = {"image": np.array([0, 0]), "cls": np.array([0, 0]), "xywh": np.array([[0, 0, 10, 10], [20, 0, 10, 10]], float)}
    dt = {
        "image": np.array([0, 0, 0, 0]),
        "cls": np.array([0, 0, 0, 1]),
        "xywh": np.array([[0, 0, 10, 10], [1, 0, 10, 10], [20, 0, 10, 10], [20, 0, 10, 10]], float),
        "score": np.array([0.9, 0.8, 0.7, 0.95]),
    }
    m = match(gt, dt, 0.5, max_det=100)
    assert m.tp.tolist() == [True, False, True, False]  # the duplicate finds its object taken; class 1 has none
    assert m.gt_index.tolist() == [0, -1, 1, -1] and m.gt_matched.all()
    assert box_iou_xywh(dt["xywh"][:1], dt["xywh"][1:2])[0, 0] == pytest.approx(90 / 110)
    assert match(gt, dt, 0.5, max_det=1).scored.tolist() == [True, False, False, True]  # per image and class
