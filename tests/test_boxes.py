import numpy as np
import pytest
import torch

from detect.boxes import letterbox, non_max_suppression, prepare_image
from detect.geometry import batch_shapes, rect_shape


def test_rect_shape_16x9_becomes_384x640():
    assert rect_shape(1080, 1920, 640) == (384, 640)
    assert rect_shape(1920, 1080, 640) == (640, 384)
    assert rect_shape(720, 1280, 640) == (384, 640)
    assert rect_shape(480, 640, 640) == (480, 640)


def test_prepare_1080x1920_by_hand():
    img = np.zeros((1080, 1920, 3), np.uint8)
    net, lb = prepare_image(img, 640)
    assert net.shape == (384, 640, 3)
    # 1920 -> 640 is a 1/3 scale: 1080 -> 360 rows, padded by 12 above and 12 below.
    assert lb.gain == (640 / 1920, 360 / 1080) and lb.pad == (0, 12)
    assert (net[:12] == 114).all() and (net[-12:] == 114).all() and (net[12:-12] == 0).all()
    box = torch.tensor([[0.0, 12.0, 640.0, 372.0]])  # the whole picture area
    assert torch.allclose(lb.to_original(box), torch.tensor([[0.0, 0.0, 1920.0, 1080.0]]))


@pytest.mark.parametrize("h,w", [(333, 517), (517, 333), (101, 999), (640, 640), (37, 41)])
def test_letterbox_inverse_on_odd_sizes(h, w):
    rng = np.random.default_rng(h * w)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    net, lb = prepare_image(img, 320)
    assert net.shape[0] % 32 == 0 and net.shape[1] % 32 == 0
    xy = rng.uniform(0, 1, (20, 2)) * [w, h]
    wh = rng.uniform(1, 0.3 * min(h, w), (20, 2))
    boxes = np.concatenate([xy, np.minimum(xy + wh, [w, h])], 1)
    back = lb.to_original(lb.to_network(boxes), clip=False)
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    # The content really sits where the map says: the image's corners land on the pad offsets.
    left, top = lb.pad
    nh, nw = round(h * lb.gain[1]), round(w * lb.gain[0])
    assert (net[top : top + nh, left : left + nw] != 114).any()
    if top:
        assert (net[:top] == 114).all()
    if left:
        assert (net[:, :left] == 114).all()


def test_letterbox_no_upscale_keeps_pixels():
    img = np.full((100, 200, 3), 7, np.uint8)
    out, lb = letterbox(img, (128, 256), scaleup=False)
    assert out.shape == (128, 256, 3) and lb.gain == (1.0, 1.0) and lb.pad == (28, 14)
    assert (out[14:114, 28:228] == 7).all()


def test_batch_shapes_like_official():
    hw = np.array([[1080, 1920], [720, 1280], [480, 640], [640, 480], [1920, 1080]], float)
    ar = hw[:, 0] / hw[:, 1]
    hw = hw[np.argsort(ar)]
    shapes = batch_shapes(hw, batch_size=2, img_size=640)
    # batch 1: ar 0.5625 both -> ceil(0.5625*20 + 0.5)*32 = 384; batch 2: 0.75 and 1.33 mixed -> square;
    # batch 3: portrait 1.78 -> width ceil(20/1.78 + 0.5)*32 = 384.
    assert shapes.tolist() == [[384, 672], [672, 672], [672, 384]]


def _pred(rows, nc=3):
    """rows of (cx, cy, w, h, obj, class, class_prob) -> (1, n, 5 + nc) YOLOv5 output."""
    out = torch.zeros(1, len(rows), 5 + nc)
    for i, (cx, cy, w, h, obj, c, p) in enumerate(rows):
        out[0, i, :5] = torch.tensor([cx, cy, w, h, obj])
        out[0, i, 5 + c] = p
    return out


def test_nms_by_hand():
    pred = _pred(
        [
            (50, 50, 20, 20, 0.9, 0, 1.0),  # kept
            (51, 50, 20, 20, 0.8, 0, 1.0),  # IoU 0.9 with the first, same class: suppressed
            (51, 50, 20, 20, 0.7, 1, 1.0),  # same place, other class: kept
            (150, 150, 10, 10, 0.5, 2, 0.4),  # score 0.2 < conf 0.25: dropped
        ]
    )
    det = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.45)[0]
    assert det[:, 5].tolist() == [0, 1]
    assert torch.allclose(det[0], torch.tensor([40.0, 40, 60, 60, 0.9, 0]))
    agnostic = non_max_suppression(pred, 0.25, 0.45, agnostic=True)[0]
    assert agnostic[:, 5].tolist() == [0]
    only_1 = non_max_suppression(pred, 0.25, 0.45, classes=[1])[0]
    assert only_1[:, 5].tolist() == [1]
    assert len(non_max_suppression(pred, 0.25, 0.45, max_det=1)[0]) == 1


def test_nms_multi_label_keeps_each_class_above_threshold():
    pred = torch.zeros(1, 1, 8)
    pred[0, 0, :5] = torch.tensor([10.0, 10, 4, 4, 1.0])
    pred[0, 0, 5:] = torch.tensor([0.6, 0.3, 0.001])
    det = non_max_suppression(pred, conf_thres=0.01, iou_thres=0.5, multi_label=True)[0]
    assert sorted(det[:, 5].tolist()) == [0, 1] and torch.allclose(
        det[:, 4].sort(descending=True).values, torch.tensor([0.6, 0.3])
    )
    assert non_max_suppression(pred, 0.01, 0.5)[0][:, 5].tolist() == [0]


def test_nms_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="conf_thres"):
        non_max_suppression(torch.zeros(1, 1, 6), conf_thres=1.5)
