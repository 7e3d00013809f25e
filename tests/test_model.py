import pytest
import torch

from detect.model import (
    C3,
    SPPF,
    Bottleneck,
    Conv,
    Detect,
    YOLOv5,
    build_model,
    count_gflops,
    count_params,
    default_arch,
)

# Published YOLOv5 v6 table at 640x640, nc=80: (params in millions, GFLOPs).
PUBLISHED = {
    "yolov5n": (1.9, 4.5),
    "yolov5s": (7.2, 16.5),
    "yolov5m": (21.2, 49.0),
    "yolov5l": (46.5, 109.1),
    "yolov5x": (86.7, 205.7),
}
# Exact parameter counts of the official models (fuse=False), nc=80.
EXACT_PARAMS = {"yolov5n": 1872157, "yolov5s": 7235389, "yolov5m": 21190557, "yolov5l": 46563709, "yolov5x": 86749405}


@pytest.mark.parametrize("name", PUBLISHED)
def test_params_and_gflops_match_published_table(name):
    model = build_model(default_arch(name, nc=80))
    assert count_params(model) == EXACT_PARAMS[name]
    model.fuse()  # the published table describes the fused inference model
    assert round(count_params(model) / 1e6, 1) == PUBLISHED[name][0]
    # The table rounds to 0.1 GFLOPs, and its counter (thop) adds the bias adds that
    # torch.utils.flop_counter leaves out (< 0.5%).
    gflops = count_gflops(model, (640, 640))
    assert abs(gflops - PUBLISHED[name][1]) <= 0.05 + 0.005 * PUBLISHED[name][1]


def test_block_shapes():
    x = torch.randn(2, 8, 16, 20)
    assert Conv(8, 12, 3, 2)(x).shape == (2, 12, 8, 10)
    assert Bottleneck(8, 8, 4)(x).shape == x.shape and Bottleneck(8, 8, 4).add
    assert not Bottleneck(8, 6, 4).add
    assert C3(8, 10, 4, 3, [(2, 4), (5, 4)], shortcut=True)(x).shape == (2, 10, 16, 20)
    assert SPPF(8, 16, 4)(x).shape == (2, 16, 16, 20)


def test_detect_train_and_eval_outputs():
    model = build_model(default_arch("yolov5n", nc=3))
    x = torch.zeros(1, 3, 64, 96)
    maps = model.train()(x)
    assert [tuple(m.shape) for m in maps] == [(1, 3, 8, 12, 8), (1, 3, 4, 6, 8), (1, 3, 2, 3, 8)]
    out = model.eval()(x)
    assert out.shape == (1, 3 * (8 * 12 + 4 * 6 + 2 * 3), 8)


def test_detect_decoding_by_hand():
    """A zero logit map decodes to sigmoid(0)=0.5: xy = (0.5*2 - 0.5 + cell) * stride, wh = anchor."""
    det = Detect(nc=1, anchors=[[10, 20, 30, 40]], ch=[4], strides=(8,)).eval()
    torch.nn.init.zeros_(det.m[0].weight)
    torch.nn.init.zeros_(det.m[0].bias)
    out = det([torch.zeros(1, 4, 2, 3)])  # 2 anchors x 2 x 3 cells
    first_anchor = out[0, :6]
    assert torch.allclose(first_anchor[:, 0], torch.tensor([4.0, 12, 20, 4, 12, 20]))  # (0.5 + x) * 8
    assert torch.allclose(first_anchor[:, 1], torch.tensor([4.0, 4, 4, 12, 12, 12]))
    assert torch.allclose(first_anchor[:, 2:4], torch.tensor([10.0, 20]).expand(6, 2))
    assert torch.allclose(out[0, 6:, 2:4], torch.tensor([30.0, 40]).expand(6, 2))
    assert torch.allclose(out[..., 4:], torch.tensor(0.5))


def test_state_dict_keys_follow_official_layout():
    keys = build_model(default_arch("yolov5n")).state_dict().keys()
    assert "model.0.conv.weight" in keys and "model.24.m.2.bias" in keys and "model.24.anchors" in keys
    assert "model.9.cv2.bn.running_var" in keys and "model.23.m.0.cv1.conv.weight" in keys


def test_rebuild_from_pruned_channel_spec():
    arch = default_arch("yolov5n", nc=4)
    arch["channels"].update(
        {"model.0": 8, "model.2.cv1": 12, "model.2.m.0.cv1": 5, "model.9.cv1": 40, "model.17.cv3": 24}
    )
    pruned = YOLOv5(arch)
    assert pruned.model[2].m[0].cv2.conv.out_channels == 12  # residual keeps the C3.cv1 width
    rebuilt = YOLOv5(pruned.arch)
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.randn(1, 3, 64, 64)
    pruned.eval(), rebuilt.eval()
    assert torch.equal(pruned(x), rebuilt(x))
    assert count_params(pruned) < count_params(build_model(default_arch("yolov5n", nc=4)))


def test_fuse_keeps_outputs():
    model = build_model(default_arch("yolov5n", nc=5))
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.running_mean, -0.5, 0.5)
            torch.nn.init.uniform_(m.running_var, 0.5, 2.0)
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    model.eval()
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
        fused = model.fuse()(x)
    assert torch.allclose(ref, fused, rtol=1e-4, atol=1e-3)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="unknown model 'yolov5q'"):
        default_arch("yolov5q")
