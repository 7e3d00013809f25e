"""TTA, slicing and fusion: coordinate maps checked by hand, and on the real yolov5n."""

import numpy as np
import pytest
import torch

from detect.infer.merge import fuse, greedy_nmm, greedy_nmm_loop
from detect.infer.predictor import InferenceConfig, Member, Predictor
from detect.infer.slicing import slice_windows, sliced_detections, window_starts
from detect.infer.tta import AugmentedBackend, clip_augmented, scale_batch, unscale
from tests.clirun import run_cli
from tests.conftest import shared_path


class RectFinder:
    """A backend that 'detects' the white pixels of its input as one box, in YOLOv5's output layout:
    (b, N, 6) rows for P3, P4, P5 cells; the box goes in the middle (P4) layer, which TTA keeps."""

    names, stride, fixed_shape = ["white"], 32, None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        p3, p4, p5 = (3 * (h // s) * (w // s) for s in (8, 16, 32))
        out = torch.zeros(b, p3 + p4 + p5, 6)
        for i in range(b):
            ys, xs = torch.nonzero(x[i].mean(0) > 0.99, as_tuple=True)
            if len(xs):
                x1, y1, x2, y2 = xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1
                out[i, p3] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.9, 1.0])
        return out


def _box(pred: torch.Tensor) -> list:
    row = pred[0, pred[0, :, 4].argmax()]
    cx, cy, w, h = row[:4].tolist()
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def test_flip_of_flipped_maps_back_exactly():
    x = torch.zeros(1, 3, 64, 96)
    x[..., 10:30, 7:41] = 1.0
    pred = RectFinder()(x.flip(3))
    assert _box(unscale(pred, (1.0, 1.0), True, 96)) == pytest.approx([7, 10, 41, 30])


def test_tta_passes_map_back_to_the_input():
    x = torch.zeros(1, 3, 320, 480)
    x[..., 96:224, 144:336] = 1.0  # a box whose edges stay sharp at 0.83 and 0.67 (bilinear, within 1 px)
    finder, outs = RectFinder(), []
    for ratio, flip in ((1.0, False), (0.83, True), (0.67, False)):
        xi, scale = scale_batch(x.flip(3) if flip else x, ratio, 32, same_shape=False)
        assert xi.shape[2] % 32 == 0 and xi.shape[3] % 32 == 0
        outs.append(unscale(finder(xi), scale, flip, 480))
        assert _box(outs[-1]) == pytest.approx([144, 96, 336, 224], abs=1.6)  # 1 px at the scaled size
    merged = AugmentedBackend(finder)(x)
    assert merged.shape[1] == sum(o.shape[1] for o in clip_augmented(outs))
    assert (merged[0, :, 4] > 0).sum() == 3  # the P4 box of every pass survives the clipping


def test_tta_same_shape_for_fixed_graphs():
    x = torch.rand(2, 3, 384, 640)
    y, scale = scale_batch(x, 0.67, 32, same_shape=True)
    assert y.shape == x.shape and scale == (int(640 * 0.67) / 640, int(384 * 0.67) / 384)


def test_windows_cover_an_odd_image_inside_its_bounds():
    assert window_starts(731, 192, 0.2) == [0, 153, 306, 459, 539]
    assert window_starts(100, 256, 0.2) == [0]  # a slice larger than the image is the image
    wins = slice_windows(517, 731, (256, 192), 0.2)
    covered = np.zeros((517, 731), bool)
    for x0, y0, x1, y1 in wins:
        assert (x1 - x0, y1 - y0) == (192, 256) and x0 >= 0 and y0 >= 0 and x1 <= 731 and y1 <= 517
        covered[y0:y1, x0:x1] = True
    assert covered.all()


def test_slice_boxes_map_back_to_original_pixels_exactly():
    img = np.zeros((517, 731, 3), np.uint8)
    img[301:340, 411:437] = 255  # a 26x39 object at an odd place
    det = sliced_detections(RectFinder(), img, 256, InferenceConfig(slice_hw=(256, 192), slice_overlap=0.2, conf=0.5,
                                                                    iou=0.5, max_det=10, interpolation="area"))
    wins = slice_windows(517, 731, (256, 192), 0.2)
    inside = [w for w in wins if w[0] <= 411 and w[1] <= 301 and w[2] >= 437 and w[3] >= 340]
    partial = [w for w in wins if w not in inside and w[0] < 437 and w[2] > 411 and w[1] < 340 and w[3] > 301]
    assert len(inside) >= 1 and len(det) == len(inside) + len(partial)
    whole = [d for d in det.tolist() if d[2] - d[0] == 26 and d[3] - d[1] == 39]
    assert len(whole) == len(inside) and all(d[:4] == [411, 301, 437, 340] for d in whole)
    for d in det.tolist():  # partial views are the object clipped to their window
        assert 411 <= d[0] and 301 <= d[1] and d[2] <= 437 and d[3] <= 340
    merged = greedy_nmm(det, 0.5)
    assert merged.tolist() == [[411, 301, 437, 340, pytest.approx(0.9), 0.0]]


def test_greedy_nmm_grows_only_with_confident_partners():
    full = [0, 0, 100, 100, 0.9, 0]
    cut = [50, 0, 130, 100, 0.85, 0]  # IoS 50*100 / 80*100 = 0.625: merged, and confident: the box grows
    faint_out = [-20, 10, 60, 90, 0.02, 0]  # IoS 60*80 / 80*80 = 0.75: absorbed, too faint to grow the box
    apart = [120, 0, 230, 100, 0.01, 0]  # no overlap with the full box: kept
    other_class = [0, 0, 100, 100, 0.7, 1]
    out = greedy_nmm(torch.tensor([faint_out, full, apart, cut, other_class]), 0.5)
    assert out.tolist() == [pytest.approx(b) for b in ([0, 0, 130, 100, 0.9, 0], other_class, apart)]
    sahi = greedy_nmm(torch.tensor([faint_out, full, cut]), 0.5, grow_ratio=0.0)  # SAHI's union of all
    assert sahi[0, :4].tolist() == [-20, 0, 130, 100]


def dense_slice_union(seed: int, people: int = 120, views: int = 6) -> torch.Tensor:
    """A crowd as slicing sees it: each person boxed by several windows (jittered, some cut by a tile
    edge), two classes sharing some boxes, scores with ties."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(people, 2, generator=g) * torch.tensor([1920.0, 1080.0])
    size = 20 + torch.rand(people, 2, generator=g) * torch.tensor([60.0, 160.0])
    boxes = []
    for _ in range(views):
        c = centre + torch.randn(people, 2, generator=g) * 3
        s = size * (0.5 + torch.rand(people, 1, generator=g))  # a tile edge leaves part of the figure
        x1y1 = c - s / 2
        score = (torch.rand(people, 1, generator=g) * 20).round() / 20  # ties on purpose
        cls = (torch.rand(people, 1, generator=g) < 0.3).float()
        boxes.append(torch.cat((x1y1, x1y1 + s, score, cls), 1))
    return torch.cat(boxes)


@pytest.mark.parametrize("agnostic,max_det,grow", [(False, None, 0.9), (True, None, 0.9), (False, 150, 0.0),
                                                   (False, None, 1.0)])
def test_tensor_greedy_nmm_matches_the_loop_on_a_dense_crowd(agnostic, max_det, grow):
    for seed in range(3):
        det = dense_slice_union(seed)
        want = greedy_nmm_loop(det, 0.5, agnostic, max_det, grow)
        got = greedy_nmm(det, 0.5, agnostic, max_det, grow)
        assert 50 < len(want) < len(det)  # a real merge: boxes absorbed, many people kept
        assert torch.equal(got, want)


def test_wbf_of_a_model_with_itself_is_the_model(yolov5n_pt):
    from detect.backend import TorchBackend
    from detect.data.dataset import load_image

    backend = TorchBackend(yolov5n_pt, torch.device("cpu"))
    img = load_image(shared_path("images/bus.jpg"))
    single = Predictor([Member(backend, 640)], InferenceConfig())(img)
    assert len(single) >= 4
    for conf_type in ("max", "avg"):
        for method in ("wbf", "nms"):
            cfg = InferenceConfig(fuse=method, fuse_conf=conf_type)
            twice = Predictor([Member(backend, 640), Member(backend, 640)], cfg)(img)
            order = single[:, 4].argsort(descending=True)
            assert twice.shape == single.shape
            assert torch.allclose(twice[:, :5], single[order][:, :5], atol=1e-3) and (twice[:, 5] == single[order][:, 5]).all()


def test_fuse_weights_pull_the_box():
    a = torch.tensor([[0.0, 0, 100, 100, 0.9, 3]])
    b = torch.tensor([[10.0, 0, 110, 100, 0.9, 3]])
    out = fuse([a, b], (200, 200), InferenceConfig(fuse="wbf", fuse_iou=0.5, fuse_conf="max"), weights=[3, 1])
    assert out[0, :4].tolist() == pytest.approx([2.5, 0, 102.5, 100]) and out[0, 5] == 3


def test_tta_on_yolov5n_finds_the_same_people(yolov5n_pt):
    from torchvision.ops import box_iou

    from detect.backend import TorchBackend
    from detect.data.dataset import load_image

    backend = TorchBackend(yolov5n_pt, torch.device("cpu"))
    img = load_image(shared_path("images/zidane.jpg"))
    plain = Predictor([Member(backend, 640)], InferenceConfig(conf=0.4))(img)
    tta = Predictor([Member(backend, 640)], InferenceConfig(conf=0.4, augment=True))(img)
    assert len(plain) == 2 and len(tta) >= 2  # the two players
    assert box_iou(plain[:, :4], tta[:, :4]).max(1).values.min() > 0.85


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--slice", "10x640"], "expected WxH in pixels"),
        (["--no-full"], "--no-full only applies with --slice"),
        (["--fuse-weights", "1", "2"], "--fuse-weights has 2 values for 1 --weights"),
        (["--submission", "out.txt"], "use .csv or .json"),
        (["--coco-ann", "a.json"], "--coco-ann applies to a .json --submission only"),
        (["--img", "640", "650"], "--img 650: must be a positive multiple of 32"),
        (["--slice-overlap", "0.95", "--slice", "640"], "--slice-overlap 0.95: must be in [0, 0.9]"),
    ],
)
def test_inference_flags_fail_in_one_line(tmp_path, args, expect):
    """In this process (tests/clirun.py): the predict CLI's end-to-end subprocess tests are in test_val_predict."""
    img = tmp_path / "a.jpg"
    img.write_bytes(b"")
    r = run_cli("detect.predict", "--weights", "w.pt", "--source", img, *args)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode == 2 and expect in lines[-1] and "Traceback" not in r.stderr, r.stderr  # argparse: usage first
