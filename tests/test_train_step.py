"""The training step and its builders, in process and hand-checkable: no subprocess, no dataset."""

import pytest
import torch
from torch import nn

from detect.hyp import load_hyp
from detect.model import build_model, default_arch
from detect.optim import ModelEMA, bn_gamma_summary, bn_sparsity_grad
from detect.train.builders import head_class_map, transfer_head, warmup_iterations
from detect.train.hooks import ChannelSparsity, default_hooks
from detect.train.step import TrainStep


class _Scale(nn.Module):
    """y = w * x with one weight: d(sum y)/dw = sum x, easy to check by hand."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0]))

    def forward(self, x):
        return self.w * x


def _sum_loss(preds, targets):
    return preds.sum(), torch.zeros(3)


def _step(model, lr=1.0, hooks=(), scaler=None, hyp=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = scaler or torch.amp.GradScaler("cpu", enabled=False)
    hyp = load_hyp(None, hyp or {})
    return TrainStep(model, model, _sum_loss, opt, scaler, ModelEMA(model, 0.9, 1.0), hooks, hyp=hyp), opt


def test_accumulation_sums_micro_batches_then_steps_once():
    model = _Scale()
    step, _ = _step(model, lr=0.5)
    step.backward(torch.tensor([2.0]), None, will_step=False)
    step.backward(torch.tensor([3.0]), None, will_step=True)
    assert model.w.grad.item() == pytest.approx(5.0)  # 2 + 3, nothing stepped yet
    step.step(progress=0.0)
    assert model.w.item() == pytest.approx(1.0 - 0.5 * 5.0)
    assert model.w.grad is None and step.ema.updates == 1


def test_gradient_hooks_see_unscaled_gradients_and_run_in_order():
    model = _Scale()
    seen = []

    def record(m, progress):
        seen.append((m.w.grad.item(), progress))
        m.w.grad.add_(10.0)

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=True)
    step, _ = _step(model, lr=0.1, hooks=[record], scaler=scaler)
    step.backward(torch.tensor([4.0]), None, will_step=True)
    assert model.w.grad.item() == pytest.approx(4.0 * 2**10)  # scaled until the step unscales
    step.step(progress=0.25)
    assert seen == [(pytest.approx(4.0), 0.25)]
    assert model.w.item() == pytest.approx(1.0 - 0.1 * (4.0 + 10.0))


def test_sam_step_restores_the_weights_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    before = [p.detach().clone() for p in model.parameters()]
    step, _ = _step(model, hyp={"sam": True, "sam_rho": 0.5, "sam_adaptive": False})
    step.backward(torch.randn(8, 3), None, will_step=True)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert all(p.grad is not None for p in model.parameters())


def test_sparsity_reaches_sync_batchnorm():
    """--sync-bn converts BatchNorm2d into SyncBatchNorm: the L1 term and the gamma summary must still see it."""
    model = nn.SyncBatchNorm.convert_sync_batchnorm(nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4)))
    bn = model[1]
    assert isinstance(bn, nn.SyncBatchNorm)
    bn.weight.grad = torch.zeros(4)
    bn_sparsity_grad(model, 1e-3)
    assert torch.allclose(bn.weight.grad, torch.full((4,), 1e-3))
    assert bn_gamma_summary(model)["count"] == 4
    assert bn_gamma_summary(nn.Linear(2, 2))["count"] == 0  # no BatchNorm at all: no crash


def test_hooks_order_and_linear_sparsity_schedule():
    hyp = load_hyp(None, {"sparsity": 0.01, "sparsity_schedule": "linear", "grad_clip": 10.0, "grad_centralize": True})
    names = [type(h).__name__ for h in default_hooks(hyp, extra=[lambda m, p: None])]
    assert names == ["ChannelSparsity", "function", "Centralize", "ClipNorm"]
    assert ChannelSparsity(0.01, "linear").current(0.75) == pytest.approx(0.0025)


def test_warmup_floor_never_exceeds_its_share_of_the_run():
    hyp = load_hyp()
    assert warmup_iterations(hyp, batches=1000, epochs=300)[0] == 3000  # YOLOv5's 3 epochs, untouched
    assert warmup_iterations(hyp, batches=10, epochs=3)[0] == 30  # warmup_epochs as given, no floor
    iters, note = warmup_iterations(hyp.replace(warmup_epochs=0.5), batches=8, epochs=10)  # the floor of 100
    assert iters == 8 and "capped at 10%" in note  # would be all 80 iterations of the run


def test_head_transfer_copies_rows_by_class_name():
    old = build_model(default_arch("yolov5n", nc=3))
    with torch.no_grad():
        for conv in old.detect.m:
            conv.weight.normal_()
            conv.bias.normal_()
    src = old.state_dict()
    mapping = head_class_map(["person", "car", "Dog"], ["dog", "person"])
    assert mapping == [2, 0]
    new = build_model(default_arch("yolov5n", nc=2))
    assert transfer_head(new, src, mapping, old_nc=3) == 6
    for i in range(3):
        w_old, w_new = src[f"model.24.m.{i}.weight"].view(3, 8, -1), new.detect.m[i].weight.view(3, 7, -1)
        assert torch.equal(w_new[:, :5], w_old[:, :5])  # box + objectness
        assert torch.equal(w_new[:, 5], w_old[:, 5 + 2]) and torch.equal(w_new[:, 6], w_old[:, 5 + 0])
    assert head_class_map(["a", "b"], ["a", "b"]) is None  # identical: plain loading
    assert head_class_map(["a", "b"], ["zebra", "A"]) == [-1, 0]  # unknown class: a fresh row, the rest kept
    fresh = build_model(default_arch("yolov5n", nc=2))
    before = fresh.detect.m[0].weight.detach().clone().view(3, 7, -1)
    transfer_head(fresh, src, [-1, 1], old_nc=3)
    after, w_old = fresh.detect.m[0].weight.view(3, 7, -1), src["model.24.m.0.weight"].view(3, 8, -1)
    assert torch.equal(after[:, :5], w_old[:, :5]) and torch.equal(after[:, 6], w_old[:, 5 + 1])
    assert torch.equal(after[:, 5], before[:, 5])  # "zebra" keeps its fresh initialisation


def test_callbacks_refuse_an_event_that_does_not_exist():
    from detect.train.callbacks import Callbacks

    seen = []

    class Good:
        def on_epoch_end(self, run, epoch, row):
            seen.append(epoch)

    class Misspelt:
        def on_epoch_ends(self, run, epoch, row):
            seen.append("never")

    cbs = Callbacks([Good()])
    cbs.on_epoch_end(None, 3, {})
    assert seen == [3]
    with pytest.raises(AttributeError, match="no callback event 'on_epoch_ends'"):
        cbs.on_epoch_ends(None, 3, {})
    with pytest.raises(TypeError, match="Misspelt implements on_epoch_ends: not an event"):
        Callbacks([Misspelt()])
