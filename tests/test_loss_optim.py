import math

import pytest
import torch
from torch import nn

from detect.hyp import load_hyp
from detect.loss import YOLOLoss
from detect.model import Detect, build_model, default_arch
from detect.optim import SAM, ModelEMA, bn_sparsity_grad, build_optimizer, centralize_gradients, lr_lambda


def _detect(anchors_px):
    return Detect(nc=3, anchors=[anchors_px], ch=[4], strides=(8,))


def test_target_assignment_by_hand():
    """One level, stride 8, a 4x4 grid (32 px input). Target centre (0.52, 0.30) -> grid (2.08, 1.20),
    size 0.1 x 0.2 -> 0.4 x 0.8 cells. Anchors (px) 4x8, 6x6, 80x80 -> grid 0.5x1, 0.75x0.75, 10x10.
    Shape match (side ratio < 4): anchor 0 (ratios 0.8, 0.8) and 1 (0.53, 1.07); not 2 (25x).
    Cells: the centre (2, 1); x % 1 = 0.08 < 0.5 and x > 1 -> also the left cell (1, 1);
    y % 1 = 0.20 < 0.5 and y > 1 -> also the upper cell (2, 0); right/down: 1.92 % 1, 2.8 % 1 >= 0.5 -> no."""
    det = _detect([4, 8, 6, 6, 80, 80])
    loss = YOLOLoss(det, load_hyp(), img_size=32)
    preds = [torch.zeros(1, 3, 4, 4, 8)]
    targets = torch.tensor([[0, 2, 0.52, 0.30, 0.1, 0.2]])
    tcls, tbox, indices, anchors = loss.build_targets(preds, targets)
    b, a, gj, gi = indices[0]
    got = sorted(zip(a.tolist(), gj.tolist(), gi.tolist()))
    assert got == sorted((anc, y, x) for anc in (0, 1) for (y, x) in ((1, 2), (1, 1), (0, 2)))
    assert tcls[0].tolist() == [2] * 6 and b.tolist() == [0] * 6
    # Box targets are offsets from each cell's corner: centre cell (2,1) -> (0.08, 0.20); left -> (1.08, 0.20).
    for (_anchor, y, x), box in zip(zip(a.tolist(), gj.tolist(), gi.tolist()), tbox[0].tolist()):
        assert box[0] == pytest.approx(2.08 - x, abs=1e-5) and box[1] == pytest.approx(1.20 - y, abs=1e-5)
        assert box[2:] == pytest.approx([0.4, 0.8], abs=1e-5)
    assert torch.allclose(anchors[0][a == 1], torch.tensor([0.75, 0.75]))


def test_no_targets_and_perfect_box():
    det = _detect([8, 8, 16, 16, 32, 32])
    loss = YOLOLoss(det, load_hyp(), img_size=32)
    preds = [torch.zeros(2, 3, 4, 4, 8, requires_grad=True)]
    total, items = loss(preds, torch.zeros(0, 6))
    assert items["box"] == 0 and items["cls"] == 0 and items["obj"] > 0  # only objectness (no objects) remains
    assert float(total.detach()) == pytest.approx(float(sum(items.values())) * len(preds[0]))  # the terms add up
    total.backward()
    assert preds[0].grad is not None


def test_ignore_regions_remove_objectness_terms_by_hand():
    """A 4x4 grid (32 px input): a region over x 0..0.5, y 0..0.25 holds the centres of cells (0, 0) and
    (0, 1) in row 0 (centres 0.125, 0.375 < 0.5; row centre 0.125 < 0.25). Their objectness gradient is zero
    for every anchor, every other cell's is as without the region, and the loss drops by exactly their terms
    (still divided by all 2 x 3 x 16 cells). A region over a whole image takes it out of the loss entirely."""
    det = _detect([8, 8, 16, 16, 32, 32])
    loss = YOLOLoss(det, load_hyp(), img_size=32)
    preds = torch.randn(2, 3, 4, 4, 8, generator=torch.Generator().manual_seed(0))
    target = torch.tensor([[1, 0, 0.6, 0.6, 0.3, 0.3]])
    region = torch.tensor([[0, -1, 0.25, 0.125, 0.5, 0.25]])

    def obj_grad(targets):
        p = preds.clone().requires_grad_(True)
        total, terms = loss([p], targets)
        total.backward()
        return terms["obj"], p.grad[..., 4]

    obj, grad = obj_grad(target)
    obj_r, grad_r = obj_grad(torch.cat([target, region]))
    inside = torch.zeros(2, 3, 4, 4, dtype=torch.bool)
    inside[0, :, 0, :2] = True
    assert (grad_r[inside] == 0).all() and (grad[inside] != 0).all()
    assert torch.allclose(grad_r[~inside], grad[~inside], rtol=1e-6, atol=0)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(preds[..., 4][inside], torch.zeros(6), reduction="sum")
    assert float(obj - obj_r) == pytest.approx(float(bce / 96 * loss.balance[0] * loss.obj_gain), rel=1e-5)
    _, grad_all = obj_grad(torch.cat([target, torch.tensor([[0, -1, 0.5, 0.5, 1.0, 1.0]])]))
    assert (grad_all[0] == 0).all() and torch.allclose(grad_all[1], grad[1], rtol=1e-6, atol=0)  # an unlabelled image: no term left


def test_a_target_inside_an_ignore_region_is_still_taught():
    det = _detect([8, 8, 16, 16, 32, 32])
    loss = YOLOLoss(det, load_hyp(), img_size=32)
    p = torch.zeros(1, 3, 4, 4, 8, requires_grad=True)
    loss([p], torch.tensor([[0, 1, 0.4, 0.4, 0.3, 0.3], [0, -1, 0.5, 0.5, 1.0, 1.0]]))[0].backward()
    b, a, gj, gi = loss.build_targets([p], torch.tensor([[0, 1, 0.4, 0.4, 0.3, 0.3]]))[2][0]
    assert len(b) and (p.grad[b, a, gj, gi, 4] != 0).all()  # taught: the matched cells keep their terms
    assert int((p.grad[..., 4] != 0).sum()) == len(set(zip(a.tolist(), gj.tolist(), gi.tolist())))


def test_focal_loss_is_used_when_gamma_set():
    det = _detect([8, 8, 16, 16, 32, 32])
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.25, 0.25]])
    preds = [torch.randn(1, 3, 4, 4, 8, generator=torch.Generator().manual_seed(0))]
    bce = YOLOLoss(det, load_hyp(), 32)(preds, targets)[1]
    focal = YOLOLoss(det, load_hyp(overrides={"fl_gamma": 1.5}), 32)(preds, targets)[1]
    assert focal["box"] == bce["box"] and focal["obj"] < bce["obj"] and focal["cls"] < bce["cls"]  # box unchanged


def test_optimizer_groups_no_decay_on_bn_and_bias():
    model = build_model(default_arch("yolov5n", nc=2))
    opt = build_optimizer(model, load_hyp(), batch_size=16, accumulate=4)
    bn, conv, bias = opt.param_groups
    assert bn.get("weight_decay", 0) == 0 and bias["weight_decay"] == 0
    assert conv["weight_decay"] == pytest.approx(0.0005)  # 16 x 4 = the nominal 64
    n_bn = sum(1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert len(bn["params"]) == n_bn and all(p.dim() == 4 for p in conv["params"])


def test_lr_schedules():
    hyp = load_hyp()
    cos = lr_lambda(hyp, 10)
    assert (
        cos(0) == pytest.approx(1.0)
        and cos(10) == pytest.approx(hyp.lrf)
        and cos(5) == pytest.approx((1 + 0.01) / 2)
    )
    lin = lr_lambda(hyp.replace(schedule="linear"), 10)
    assert lin(5) == pytest.approx(0.5 * 0.99 + 0.01)


def test_sparsity_after_unscale_survives_amp_scale():
    """The L1 term must be added to unscaled gradients: added before, the scaler divides it away."""
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -0.5, 1.0, -2.0]))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    opt = torch.optim.SGD(bn.parameters(), lr=0.0)
    loss = bn(torch.randn(2, 4, 3, 3)).sum() * 0.0  # zero data gradient isolates the L1 term
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    bn_sparsity_grad(bn, 1e-3)
    assert torch.allclose(bn.weight.grad, torch.tensor([1e-3, -1e-3, 1e-3, -1e-3]))
    # The pitfall, for contrast: added to scaled gradients then unscaled, it shrinks by 2^16.
    bn.weight.grad = None
    scaler2 = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    scaler2.scale(bn(torch.randn(2, 4, 3, 3)).sum() * 0.0).backward()
    bn_sparsity_grad(bn, 1e-3)
    scaler2.unscale_(opt)
    assert bn.weight.grad.abs().max() < 1e-7


def test_gradient_centralization():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, 3)
    conv(torch.randn(2, 3, 8, 8)).pow(2).sum().backward()
    before = conv.weight.grad.clone()
    bias_before = conv.bias.grad.clone()
    centralize_gradients(conv)
    grad = conv.weight.grad
    # each filter's gradient loses its own mean; float32 rounding scales with the gradient's size
    assert torch.allclose(grad, before - before.mean(dim=(1, 2, 3), keepdim=True))
    assert grad.mean(dim=(1, 2, 3)).abs().max() <= 1e-6 * before.abs().max()
    assert torch.equal(conv.bias.grad, bias_before)  # 1-d parameters are left alone


def test_ema_ramps_and_tracks_buffers():
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1))
    ema = ModelEMA(model, decay=0.9999, tau=2000)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model)  # first update copies
    with torch.no_grad():
        model[0].weight.fill_(2.0)
    ema.update(model)  # d = 0.9999 * (1 - exp(-1/2000)) ~ 5e-4: almost all new
    d = 0.9999 * (1 - math.exp(-1 / 2000))
    assert ema.module[0].weight.item() == pytest.approx(1.0 * d + 2.0 * (1 - d))
    assert ema.module[1].running_mean.item() == pytest.approx(3.0)


def test_sam_restores_weights_and_keeps_bn_stats_from_first_pass():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(1))
    x = torch.randn(4, 2, 6, 6)
    model(x)  # materialise the lazy layer
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    bn = model[1]
    mean_before = bn.running_mean.clone()
    sam = SAM(model, rho=0.5)
    sam.micro_step(lambda: model(x).pow(2).mean(), lambda loss: loss.backward())
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name  # back at w after the perturbed pass
    # Running statistics moved exactly once (momentum 0.1 update from the first pass).
    with torch.no_grad():
        y = model[0](x)
    expected = 0.9 * mean_before + 0.1 * y.mean(dim=(0, 2, 3))
    assert torch.allclose(bn.running_mean, expected, atol=1e-6)
    # The gradient is the one at the perturbed point, not at w.
    model.zero_grad()
    model(x).pow(2).mean().backward()
    plain = model[0].weight.grad.clone()
    model.zero_grad()
    sam.micro_step(lambda: model(x).pow(2).mean(), lambda loss: loss.backward())
    assert not torch.allclose(model[0].weight.grad, plain)


def test_sam_accumulates_across_micro_batches():
    model = nn.Linear(3, 1)
    sam = SAM(model, rho=0.1)
    xs = [torch.randn(4, 3) for _ in range(2)]
    sam.micro_step(lambda: model(xs[0]).pow(2).mean(), lambda loss: loss.backward())
    g1 = model.weight.grad.clone()
    sam.micro_step(lambda: model(xs[1]).pow(2).mean(), lambda loss: loss.backward())
    model2 = nn.Linear(3, 1)
    model2.load_state_dict(model.state_dict())
    sam2 = SAM(model2, rho=0.1)
    sam2.micro_step(lambda: model2(xs[1]).pow(2).mean(), lambda loss: loss.backward())
    assert torch.allclose(model.weight.grad, g1 + model2.weight.grad, atol=1e-6)


def test_hyp_reads_exponent_numbers_that_yaml_leaves_as_strings(tmp_path):
    """PyYAML (YAML 1.1) reads ``1e-3`` and ``1e9`` without a dot as strings: a hyp file or ``--set`` with
    them is still a number; a word is still refused."""
    from detect.errors import UsageError

    f = tmp_path / "hyp.yaml"
    f.write_text("lr0: 1e-3\n")
    assert load_hyp(f).lr0 == 0.001 and load_hyp(overrides={"lr0": "1e9"}).lr0 == 1e9
    with pytest.raises(UsageError, match="lr0 must be a number, got 'fast'"):
        load_hyp(overrides={"lr0": "fast"})
