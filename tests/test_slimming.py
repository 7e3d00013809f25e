"""Slimming: the group regulariser, the uniform control, iterative steps and --max-drop."""

import copy
import json
import math

import pytest
import torch

from detect.errors import UsageError
from detect.groups import prunable_groups, separation
from detect.hyp import load_hyp
from detect.model import build_model, count_gflops, default_arch
from detect.train.group_lasso import GroupSparsity
from detect.train.hooks import ChannelSparsity, sparsity_hook
from detect.weights import atomic_save, load_model, make_checkpoint
from prune.config import PruneConfig
from prune.select import step_share
from prune.surgery import plan, ratio_for_gflops, remove


def _toy_descent(mode: str, steps: int = 250, lr: float = 0.1, strength: float = 0.05):
    """Gradient descent on the gammas alone: a data term holds ONE member of each even channel of every
    multi-member group at 1; the regulariser acts on everything. Returns the model's groups afterwards."""
    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=1))
    groups = [g for g in prunable_groups(model) if len(g.members) > 1]
    hook = GroupSparsity(strength, groups=groups) if mode == "group" else ChannelSparsity(strength)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    held = [(g.members[0][0], g.members[0][1][g.members[0][2] % 2 == 0]) for g in groups]
    for _ in range(steps):
        for bn in bns:
            bn.weight.grad = torch.zeros_like(bn.weight)
        for bn, idx in held:
            bn.weight.grad[idx] += 2 * (bn.weight.detach()[idx] - 1.0)
        hook(model, 0.0)
        with torch.no_grad():
            for bn in bns:
                bn.weight.sub_(lr * bn.weight.grad)
    return groups


def _sibling_ratio(groups) -> float:
    """For held channels: mean |gamma| of the other coupled members over the held member's (1 = together)."""
    ratios = []
    for g in groups:
        bn0, idx0, r0 = g.members[0]
        for bn, idx, ridx in g.members[1:]:
            even = ridx % 2 == 0
            ratios.append(bn.weight.detach().abs()[idx[even]].mean() / bn0.weight.detach().abs()[idx0[r0 % 2 == 0]].mean())
    return float(torch.stack(ratios).mean())


def test_group_lasso_drives_groups_apart_and_keeps_coupled_channels_together():
    group = _toy_descent("group")
    channel = _toy_descent("channel")
    free = lambda gs: float(torch.cat([g.scores()[1::2] for g in gs]).mean())  # noqa: E731 - unheld channels
    held = lambda gs: float(torch.cat([g.scores()[0::2] for g in gs]).mean())  # noqa: E731
    assert free(group) < 0.05 and held(group) > 0.3  # whole groups separate: removable vs kept
    assert _sibling_ratio(group) > 0.1  # held channels' coupled members are kept with them
    assert _sibling_ratio(channel) < 0.05  # per-channel L1 zeroes the siblings of a held gamma: the group stays,
    # but its members disagree, so removing it costs the held one and keeping it saves nothing


def test_separation_figures_read_a_separated_model():
    model = build_model(default_arch("yolov5n", nc=1))
    groups = prunable_groups(model)
    assert separation(groups, 0.5)["removed_over_kept"] == pytest.approx(1.0)  # all gammas 1 at init
    with torch.no_grad():
        for g in groups:
            for bn, idx, ridx in g.members:
                bn.weight[idx[ridx % 2 == 1]] = 1e-3
    sep = separation(groups, 0.5)
    assert sep["removed_over_kept"] < 0.01 and sep["group_below_0.01"] == pytest.approx(0.5, abs=0.05)


def test_hyp_selects_the_sparsity_mode():
    assert isinstance(sparsity_hook(load_hyp(None, {"sparsity": 0.01, "sparsity_mode": "group"})), GroupSparsity)
    assert isinstance(sparsity_hook(load_hyp(None, {"sparsity": 0.01})), ChannelSparsity)
    assert sparsity_hook(load_hyp()) is None


def test_group_hook_runs_on_unscaled_grads_in_a_training_step():
    """AMP path: through TrainStep with an enabled scaler, the hook adds its term after unscale."""
    from detect.optim import ModelEMA
    from detect.train.step import TrainStep

    model = build_model(default_arch("yolov5n", nc=1))
    bn = model.model[0].bn
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, enabled=True)
    seen = {}

    def grab(m, p):
        seen["grad"] = bn.weight.grad.clone()

    step = TrainStep(model, model, lambda preds, t: (sum(p.sum() for p in preds) * 0, torch.zeros(3)), opt, scaler,
                     ModelEMA(model, 0.9, 1.0), [GroupSparsity(0.01), grab], hyp=load_hyp())
    step.backward(torch.zeros(1, 3, 64, 64), None, will_step=True)
    step.step(0.0)
    assert torch.allclose(seen["grad"], torch.full_like(seen["grad"], 0.01), atol=1e-6)  # 0.01 * gamma/|gamma|, unscaled


def test_uniform_keeps_the_same_share_of_every_layer():
    model = build_model(default_arch("yolov5n", nc=1))
    plans, _ = plan(model, "uniform", 0.25)
    for p in plans:
        assert len(p.keep) == max(1, math.ceil(0.75 * p.total))
    pruned = remove(model, plans)
    assert pruned(torch.zeros(1, 3, 64, 64), raw=True)[0].shape[-1] == 6


def _conv_filters(model, name: str) -> torch.Tensor:
    return dict(model.named_modules())[name].conv.weight


def test_l1_compares_layers_by_filters_relative_to_their_layer():
    """One global threshold on filter L1 / layer mean: scaling a whole layer's filters changes nothing (raw norms
    would empty the small layer first), while weak filters inside a layer go first, and rounding keeps blocks."""
    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=1))
    before = {p.name: p.keep for p in plan(model, "l1", 0.3)[0]}
    with torch.no_grad():
        _conv_filters(model, "model.7").mul_(1e-3)  # a whole layer 1000x smaller: the same relative norms
    assert {p.name: p.keep for p in plan(model, "l1", 0.3)[0]} == before
    with torch.no_grad():
        _conv_filters(model, "model.7")[:128].mul_(1e-3)  # half of its 256 filters weak against the rest
    plans = {p.name: p for p in plan(model, "l1", 0.3, round_to=16)[0]}
    assert set(plans["model.7"].keep) <= set(range(128, 256)) and len(plans["model.7"].keep) % 16 == 0
    assert all(len(p.keep) % 16 == 0 or len(p.keep) == p.total for p in plans.values())
    with pytest.raises(UsageError, match="--ratio or --gflops"):
        plan(model, "l1", None, threshold=0.5)


def test_steps_share_compounds_to_the_target():
    assert (1 - step_share(0.5, 4)) ** 4 == pytest.approx(0.5)


@pytest.mark.slow
def test_iterative_pruning_reaches_the_ratio_in_k_steps(tmp_path, tiny_synthetic):
    from prune.pipeline import run

    ckpt = tmp_path / "m.pt"
    from detect.data.synthetic import CLASSES

    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    common = dict(weights=ckpt, data=str(tiny_synthetic), img=64, batch=2, workers=0, latency_iters=0, round_to=1,
                  calib_images=2, set=["warmup_epochs=0", "nominal_batch=2"])
    report = run(PruneConfig(out=tmp_path / "it", ratio=0.5, steps=2, step_epochs=1, strategy="uniform", **common))
    assert len(report["steps"]) == 2 and report["stopped"] is None
    shares = [s["share"] for s in report["steps"]]
    assert shares == pytest.approx([step_share(0.5, 2), 0.5])  # of the unpruned channels, after each step
    assert report["gflops_after"] / report["gflops_before"] < 0.65
    assert json.loads((tmp_path / "it" / "report.json").read_text())["strategy"] == "uniform"
    assert "| step |" in (tmp_path / "it" / "report.md").read_text()


def test_val_interval_keeps_the_last_epoch_of_the_fine_tuning(tmp_path, tiny_synthetic):
    """--val-interval >= the epochs: only the last epoch is validated, so pruned.pt is that epoch's model (the
    proof compares it with a baseline that was not chosen on the validation split either)."""
    import csv

    from prune.pipeline import run

    ckpt = tmp_path / "m.pt"
    from detect.data.synthetic import CLASSES

    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    report = run(PruneConfig(weights=ckpt, data=str(tiny_synthetic), img=64, batch=2, workers=0, latency_iters=0,
                             calib_images=2, set=["warmup_epochs=0", "nominal_batch=2"], out=tmp_path / "p",
                             ratio=0.2, finetune_epochs=2, val_interval=2))
    rows = list(csv.DictReader((tmp_path / "p" / "finetune" / "results.csv").open()))
    assert [r["map50_95"] == "nan" for r in rows] == [True, False]
    assert report["val_interval"] == 2
    best = torch.load(tmp_path / "p" / "finetune" / "weights" / "best.pt", weights_only=True)
    assert best["meta"]["epoch"] == 2
    with pytest.raises(UsageError, match="--val-interval"):
        PruneConfig(weights=ckpt, data=str(tiny_synthetic), out=tmp_path / "x", ratio=0.2, val_interval=0)


def _randomise_gamma(model) -> None:
    """Distinct BatchNorm |gamma| in [0.1, 1] (a fresh model's are all 1: every global threshold ties)."""
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(0.1, 1.0)


def _saved_model_with_random_gamma(tmp_path):
    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=1)).eval()
    _randomise_gamma(model)
    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(model, ["a"]), ckpt)
    return model, ckpt


@pytest.mark.parametrize("strategy", ["uniform", "gamma", "l1"])
def test_iterative_steps_land_on_the_one_shot_widths(tmp_path, strategy):
    """Three steps to 0.36 with --round-to 8 keep what one step keeps: planning each step on what remains
    rounded up at every step (yolov5n's 16-channel layers never shrank) and stopped at 0.78x for 0.6x."""
    from prune.iterative import run_steps

    model, ckpt = _saved_model_with_random_gamma(tmp_path)
    config = PruneConfig(weights=ckpt, data="unused.yaml", out=tmp_path, ratio=0.36, steps=3, strategy=strategy,
                         round_to=8, min_keep=0.1)
    done = run_steps(model, ["a"], config, lambda m: {"map50_95": 0.5}, lambda m: None, None)
    final, steps = done.model, done.steps
    one_shot = remove(copy.deepcopy(model), plan(model, strategy, 0.36, None, 0.1, 8)[0])
    g0 = count_gflops(model, (64, 64))
    assert [round(s["share"], 4) for s in steps] == [round(1 - 0.64 ** (k / 3), 4) for k in (1, 2, 3)]
    assert count_gflops(final, (64, 64)) / g0 == pytest.approx(count_gflops(one_shot, (64, 64)) / g0, abs=0.03)


def test_gflops_steps_meet_the_budget_when_recovery_reorders_gamma(tmp_path):
    """--gflops 0.6 in three global-|gamma| steps, each recovery reshuffling gamma (as training does): every
    step lands in [0.6^(k/3) - 0.01, 0.6^(k/3)] of the unpruned GFLOPs, re-planned on the model it starts from."""
    from prune.iterative import run_steps

    model, ckpt = _saved_model_with_random_gamma(tmp_path)

    def recover(path, epochs, out, share):
        assert 0 < share < 0.5  # of what this step started from
        m, _ = load_model(path, "cpu", fuse=False)
        _randomise_gamma(m)
        return m, {"map50_95": 0.5}, path

    config = PruneConfig(weights=ckpt, data="unused.yaml", out=tmp_path, gflops=0.6, steps=3, step_epochs=1,
                         strategy="gamma", round_to=1, min_keep=0.1, report_shape=(64, 64))
    done = run_steps(model, ["a"], config, lambda m: {"map50_95": 0.5}, lambda m: None, recover)
    final, steps = done.model, done.steps
    for k, s in enumerate(steps, 1):
        assert 0.6 ** (k / 3) - 0.011 <= s["gflops_ratio"] <= 0.6 ** (k / 3) + 1e-9
    assert count_gflops(final, (64, 64)) / count_gflops(model, (64, 64)) <= 0.6


def test_gflops_at_most_never_exceeds_the_budget_where_rounding_jumps_over_it():
    """Uniform at --round-to 8 has no yolov5n (nc=1, 64x64) point in [0.61, 0.62] of the GFLOPs (0.627, then
    0.602): by default the closest point (just above) is taken, with at_most the closest one below."""
    model = build_model(default_arch("yolov5n", nc=1))
    g0 = count_gflops(model, (64, 64))

    def landed(at_most: bool) -> float:
        ratio = ratio_for_gflops(model, "uniform", 0.62, (64, 64), round_to=8, at_most=at_most)
        return count_gflops(remove(copy.deepcopy(model), plan(model, "uniform", ratio, None, 0.1, 8)[0]), (64, 64)) / g0

    assert landed(False) == pytest.approx(0.627, abs=1e-3)
    assert landed(True) == pytest.approx(0.602, abs=1e-3)
    with pytest.raises(UsageError, match="--gflops-at-most"):
        PruneConfig(weights="w.pt", data="d.yaml", out="o", ratio=0.5, gflops_at_most=True)


def test_max_drop_stops_and_keeps_the_last_good_model(tmp_path):
    """Real surgery, scripted scores: start 0.50, step 1 -> 0.45, step 2 -> 0.30; --max-drop 0.1 stops at step 2."""
    from prune.iterative import run_steps

    model = build_model(default_arch("yolov5n", nc=1))
    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(model, ["a"]), ckpt)
    scores = iter([0.50, 0.45, 0.30, 0.20])
    config = PruneConfig(weights=ckpt, data="unused.yaml", out=tmp_path, ratio=0.75, steps=3, max_drop=0.1,
                         strategy="uniform", round_to=1)
    done = run_steps(model, ["a"], config, lambda m: {"map50_95": next(scores)}, lambda m: None, None)
    final, path, steps, stopped = done.model, done.path, done.steps, done.stopped
    assert [s["map50_95_recovered"] for s in steps] == [0.45, 0.30] and "step 2 fell 0.2000" in stopped
    assert path == tmp_path / "step1" / "pruned_untuned.pt" and "kept step 1's model" in stopped
    g0, g1 = count_gflops(model, (64, 64)), count_gflops(final, (64, 64))
    assert g1 / g0 == pytest.approx(steps[0]["gflops_ratio"], rel=0.05)


def test_a_model_distilled_from_itself_gets_no_gradient_and_the_teacher_keeps_its_statistics():
    """The student trains with batch statistics; so must the teacher, or the targets are off by the
    difference between the two BatchNorm modes (that wrecked every distilled recovery)."""
    from detect.loss import distillation_loss
    from detect.model import build_model, default_arch
    from detect.train.fit import batch_statistics_teacher

    torch.manual_seed(0)
    student = build_model(default_arch("yolov5n", nc=3)).train()
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
    teacher = batch_statistics_teacher(copy.deepcopy(student))
    frozen = copy.deepcopy(teacher.state_dict())
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        t_maps = teacher(x, raw=True)
    distillation_loss(student(x), t_maps, load_hyp()).backward()
    assert max(float(p.grad.abs().max()) for p in student.parameters() if p.grad is not None) < 1e-6
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in frozen.items() if "running" in k)  # untouched
    eval_teacher = copy.deepcopy(student).eval()
    student.zero_grad()
    with torch.no_grad():
        t_maps = eval_teacher(x, raw=True)
    distillation_loss(student(x), t_maps, load_hyp()).backward()
    assert max(float(p.grad.abs().max()) for p in student.parameters() if p.grad is not None) > 1e-3


def test_distillation_is_zero_at_the_teacher_and_works_for_one_class():
    from detect.loss import distillation_loss

    hyp = load_hyp()
    torch.manual_seed(0)
    teacher = [torch.randn(2, 3, 4, 4, 6)]  # one class: 5 + 1 outputs
    student = [teacher[0].clone().requires_grad_(True)]
    distillation_loss(student, teacher, hyp).backward()
    assert student[0].grad.abs().max() < 1e-6  # the soft-target minimum is the teacher itself
    moved = [(teacher[0] + 0.5 * torch.randn_like(teacher[0])).requires_grad_(True)]
    distillation_loss(moved, teacher, hyp).backward()
    assert moved[0].grad[..., :5].abs().sum() > 0  # box and objectness terms
    assert moved[0].grad[..., 5].abs().sum() == 0  # one class: no class term, as in the detection loss


def test_sensitivity_scan_removes_a_share_of_one_group_at_a_time():
    """One row per prunable group: that group alone loses round(share x width) channels, the rest stay, and
    the row records what the evaluation saw and the GFLOPs it saved."""
    from prune import sensitivity

    model = build_model(default_arch("yolov5n", nc=1)).eval()
    seen = []
    rows = sensitivity.scan(model, lambda m: seen.append(count_gflops(m, (64, 64))) or {"map50_95": 0.5}, None, 0.25,
                            (64, 64), progress=False)
    groups = {g.name: g.size for g in prunable_groups(model)}
    assert [r["group"] for r in rows] == list(groups) and len(seen) == len(groups) + 1
    assert all(r["removed"] == r["channels"] - max(1, round(0.75 * r["channels"])) for r in rows)
    assert all(r["gflops_saved"] > 0 and r["drop"] == 0.0 for r in rows)
    assert all(g < seen[0] for g in seen[1:])  # every scanned copy is smaller than the model


@pytest.mark.parametrize("coupled", [False, True])
def test_taylor_score_is_the_squared_first_order_loss_change(tiny_synthetic, yolov5n_pt, coupled):
    """One batch: a channel's score is (dL/dt)^2 at t = 0, where t shrinks (gamma, beta) of that channel in every
    BatchNorm the group couples to (1 - t) (a coupled group is a C3 residual sum). The reference takes that
    derivative by another route: float64 autograd through a functional call with the shrunk parameters. (A finite
    difference differs by ~10%: YOLO's objectness target, the box IoU, is detached from the gradient but moves
    with the weights.) Real weights: a random network's loss barely depends on any channel (slope ~1e-8)."""
    from torch.func import functional_call

    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from detect.data.train_dataset import TrainDataset
    from detect.loss import YOLOLoss
    from prune.importance import _PLAIN, taylor_scores

    model = load_model(yolov5n_pt, fuse=False)[0].eval()  # 80 classes: the set's 12 class ids are valid labels
    samples, _ = scan_split(load_data_config(tiny_synthetic), "train", progress=False)
    hyp = load_hyp(None, _PLAIN)
    scores = taylor_scores(model, samples, 64, hyp, batch=len(samples))
    group = next(g for g in prunable_groups(model) if (len(g.members) > 1) == coupled)
    data = TrainDataset(samples, 64, hyp, augment_data=False)
    x, targets = TrainDataset.collate([data[i] for i in range(len(data))])
    twin = copy.deepcopy(model).double()
    name_of = {m: n for n, m in model.named_modules()}
    for channel in (0, group.size - 1):
        t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        shrunk = {}
        for bn, idx, ridx in group.members:
            for part in ("weight", "bias"):
                value = getattr(twin.get_submodule(name_of[bn]), part).detach().clone()
                mask = torch.zeros_like(value, dtype=torch.bool)
                mask[idx[ridx == channel]] = True
                shrunk[f"{name_of[bn]}.{part}"] = torch.where(mask, value * (1 - t), value)
        maps = functional_call(twin, shrunk, (x.double() / 255,), {"raw": True})
        (slope,) = torch.autograd.grad(YOLOLoss(twin.detect, hyp, 64)(maps, targets)[0].sum(), t)
        assert abs(float(slope)) > 1e-4  # the channel matters to the loss: the check is not 0 == 0
        assert float(scores[group.name][channel]) == pytest.approx(float(slope) ** 2, rel=1e-3)


def test_taylor_strategy_removes_what_the_loss_does_not_use(tiny_synthetic):
    """Dead channels (gamma = beta = 0) change no loss: score 0, and the taylor plan removes them first."""
    from detect.data.config import load_data_config
    from detect.data.labels import scan_split
    from prune.importance import taylor_scores

    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=12)).eval()
    dead = [3, 5, 11]
    bn = dict(model.named_modules())["model.9.cv1"].bn
    with torch.no_grad():
        bn.weight[dead] = 0.0
        bn.bias[dead] = 0.0
    samples, _ = scan_split(load_data_config(tiny_synthetic), "train", progress=False)
    scores = taylor_scores(model, samples, 64, load_hyp(None, {}), batch=4)
    assert torch.all(scores["model.9.cv1"][dead] == 0) and scores["model.9.cv1"].sum() > 0
    plans = {p.name: p for p in plan(model, "taylor", 0.02, scores=scores)[0]}
    assert not set(dead) & set(plans["model.9.cv1"].keep)
    with pytest.raises(UsageError, match="taylor needs importance scores"):
        plan(model, "taylor", 0.02)


def test_taylor_steps_meet_a_gflops_budget(tmp_path, tiny_synthetic):
    """python -m prune --strategy taylor: importance re-estimated each step; the budget is met and reported."""
    from detect.data.synthetic import CLASSES
    from prune.pipeline import run

    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    report = run(PruneConfig(weights=ckpt, data=str(tiny_synthetic), out=tmp_path / "t", gflops=0.7, gflops_at_most=True,
                             steps=2, strategy="taylor", taylor_images=4, img=64, batch=2, workers=0, latency_iters=0,
                             calib_images=2))
    assert report["strategy"] == "taylor" and report["taylor_images"] == 4 and len(report["steps"]) == 2
    assert report["gflops_after"] / report["gflops_before"] <= 0.7
    assert report["steps"][0]["gflops_ratio"] == pytest.approx(0.7**0.5, abs=0.02)


def test_a_fine_tuning_worse_than_the_surgery_never_replaces_it(tmp_path, tiny_synthetic, monkeypatch):
    """pruned.pt is the best model of the whole run: a recovery that ends below the surgery's output (rewind.yaml
    on ccp: 0.281 right after pruning, 0.242 at fine-tuning's best epoch) hands back the surgery's model."""
    import prune.pipeline as pipeline
    from detect.data.synthetic import CLASSES
    from detect.train import FitResult

    def ruined(model) -> bool:
        return all(not bn.weight.detach().any() for bn in model.modules() if isinstance(bn, torch.nn.BatchNorm2d))

    def fake_evaluate(model, *args, **kw):
        return {"map50": 0.05, "map50_95": 0.02} if ruined(model) else {"map50": 0.5, "map50_95": 0.3}

    def fake_finetune(c, checkpoint, epochs, out, share=None, hyp_file=None, floor=None):
        model = pipeline.reload(checkpoint)
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                torch.nn.init.zeros_(bn.weight)
        atomic_save(make_checkpoint(model, list(CLASSES)), out / "best.pt")
        return FitResult({"map50": 0.05, "map50_95": 0.02}, out / "best.pt", out / "best.pt")

    monkeypatch.setattr(pipeline, "evaluate", fake_evaluate)
    monkeypatch.setattr(pipeline, "finetune", fake_finetune)
    ckpt = tmp_path / "m.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    (tmp_path / "p" / "finetune").mkdir(parents=True)
    report = pipeline.run(PruneConfig(weights=ckpt, data=str(tiny_synthetic), img=64, batch=2, workers=0,
                                      latency_iters=0, calib_images=2, out=tmp_path / "p", ratio=0.2,
                                      finetune_epochs=1))
    assert report["map50_95_finetuned"] == 0.02 and report["map50_95_final"] == 0.3
    assert report["kept"].startswith("pruned.pt: the model right after pruning (mAP50-95 0.3000)")
    kept = torch.load(tmp_path / "p" / "pruned.pt", weights_only=True)
    untuned = torch.load(tmp_path / "p" / "pruned_untuned.pt", weights_only=True)
    assert all(torch.equal(kept["model"][k], untuned["model"][k]) for k in untuned["model"])
    assert report["kept"] in (tmp_path / "p" / "report.md").read_text()
    note = pipeline.keep_note({"map50_95": 0.28}, {"map50_95": 0.36}, untuned=False)
    assert note == "pruned.pt: fine-tuning's best epoch (mAP50-95 0.3600, 0.2800 right after pruning)"


def test_recovery_starts_biases_at_lr0_at_most(tmp_path, tiny_synthetic, monkeypatch):
    import prune.pipeline as pipeline

    seen = {}

    def fake_fit(config, callbacks=None):
        seen.update(config.hyp.as_dict())
        return pipeline.FitResult({}, None, None)

    monkeypatch.setattr(pipeline, "fit", fake_fit)
    c = PruneConfig(weights=tmp_path / "m.pt", data=str(tiny_synthetic), out=tmp_path / "p", ratio=0.2)
    pipeline.finetune(c, tmp_path / "m.pt", 10, tmp_path / "f", hyp_file="configs/hyp/rewind.yaml")
    assert seen["lr0"] == 0.01 and seen["warmup_bias_lr"] == 0.01  # rewind.yaml says 0.1: 10x lr0
    c = PruneConfig(weights=tmp_path / "m.pt", data=str(tiny_synthetic), out=tmp_path / "p", ratio=0.2,
                    set=["warmup_bias_lr=0.05"])
    pipeline.finetune(c, tmp_path / "m.pt", 10, tmp_path / "f", hyp_file="configs/hyp/rewind.yaml")
    assert seen["warmup_bias_lr"] == 0.05  # asked for by name: kept
