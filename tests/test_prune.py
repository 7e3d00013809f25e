import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detect.model import build_model, count_gflops, default_arch
from detect.weights import atomic_save, load_model, make_checkpoint
from prune.select import plan_layer
from prune.surgery import prune
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
# Layers whose output channels are not tied to a residual sum: a zero channel there is dead weight.
DEAD = {
    "model.2.m.0.cv1": [1, 5],
    "model.9.cv1": [0, 3, 7],
    "model.13.cv2": [2],
    "model.17.m.0.cv2": [4, 9],
    "model.21": [0, 1, 2],
}


def _model_with_dead_channels(nc=3, dead=DEAD, beta=0.0):
    torch.manual_seed(0)
    model = build_model(default_arch("yolov5n", nc=nc))
    mods = dict(model.named_modules())
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial statistics everywhere
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        for name, idxs in dead.items():
            bn = mods[name].bn
            bn.weight[idxs] = 0.0
            bn.bias[idxs] = beta
    return model.eval()


def test_surgery_removes_exactly_dead_channels_and_keeps_outputs():
    model = _model_with_dead_channels()
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
    pruned, plans, thr = prune(model, ratio=None, threshold=1e-9, min_keep=0.1, round_to=1)
    removed = {p.name: p.total - len(p.keep) for p in plans if len(p.keep) < p.total}
    assert removed == {name: len(idxs) for name, idxs in DEAD.items()}
    with torch.no_grad():
        out = pruned.eval()(x)
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)
    assert pruned.arch["channels"]["model.9.cv1"] == default_arch("yolov5n")["channels"]["model.9.cv1"] - 3


def test_removed_constant_channels_are_folded_into_their_consumers():
    """gamma = 0, beta != 0: the channel outputs the constant SiLU(beta), so dropping it shifts its
    consumers. With a calibration batch the shift goes into the consumers' BN means; where
    every consumer is a 1x1 conv (no zero padding) the outputs stay equal."""
    dead = {k: v for k, v in DEAD.items() if k != "model.2.m.0.cv1"}  # that one feeds a padded 3x3
    model = _model_with_dead_channels(dead=dead, beta=0.7)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
    naive, _, _ = prune(copy.deepcopy(model), ratio=None, threshold=1e-9, round_to=1)
    folded, plans, _ = prune(copy.deepcopy(model), None, 1e-9, round_to=1, calib=torch.rand(2, 3, 64, 64))
    assert {p.name for p in plans if len(p.keep) < p.total} == set(dead)
    with torch.no_grad():
        assert torch.allclose(folded.eval()(x), ref, atol=1e-4, rtol=1e-4)
        assert not torch.allclose(naive.eval()(x), ref, atol=1e-2, rtol=1e-2)


def test_least_squares_reconstruction_absorbs_a_duplicated_channel(yolov5n_pt):
    """Channel 3 of a bottleneck's cv1 is an exact copy of channel 0: removing it loses nothing a refit
    cannot restore (the 3x3 cv2's weights for the copy move onto the original, zero padding included).
    The mean fold can only add a constant, so it stays off; reconstruction matches the unpruned
    outputs on images it was not fit on, and the kept-channel bookkeeping lines the targets up."""
    from prune.select import LayerPlan
    from prune.surgery import remove

    model, _ = load_model(yolov5n_pt, fuse=False)  # real weights: a random network barely uses its channels
    cv1 = model.get_submodule("model.2.m.0.cv1")
    with torch.no_grad():
        cv1.conv.weight[3] = cv1.conv.weight[0]
        for t in (cv1.bn.weight, cv1.bn.bias, cv1.bn.running_mean, cv1.bn.running_var):
            t[3] = t[0]
    total = cv1.conv.out_channels
    plans = [LayerPlan("model.2.m.0.cv1", total, [c for c in range(total) if c != 3])]
    calib, x = torch.rand(4, 3, 128, 128), torch.rand(2, 3, 96, 128)
    rebuilt = remove(copy.deepcopy(model), plans, calib, compensation="reconstruct").eval()
    folded = remove(copy.deepcopy(model), plans, calib, compensation="mean").eval()
    with torch.no_grad():
        ref, rebuilt, folded = (torch.cat([t.flatten() for t in m(x, raw=True)]) for m in (model, rebuilt, folded))
    assert torch.allclose(rebuilt, ref, atol=1e-3, rtol=1e-3)
    assert (folded - ref).abs().max() > 20 * (rebuilt - ref).abs().max()


def test_reconstruction_beats_the_mean_fold_on_a_uniform_prune(yolov5n_pt):
    model, _ = load_model(yolov5n_pt, fuse=False)
    calib, x = torch.rand(8, 3, 128, 128), torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        ref = model(x)
    err = {}
    for comp in ("mean", "reconstruct"):
        pruned, _, _ = prune(copy.deepcopy(model), 0.25, None, round_to=1, calib=calib, strategy="uniform",
                             compensation=comp)
        with torch.no_grad():
            err[comp] = float((pruned.eval()(x) - ref).norm() / ref.norm())
    assert err["reconstruct"] < 0.5 * err["mean"]  # measured 0.09 vs 0.28


def test_matched_batch_statistics_keep_the_eval_function_and_agree_with_training_mode(yolov5n_pt):
    """After compensation the running statistics are re-expressed around the input's measured ones: the
    eval-mode outputs do not change, and a training-mode forward over the calibration batch (BatchNorm on
    that batch's own statistics) now gives the eval-mode outputs; with the inherited statistics (COCO's,
    against noise images here) it did not."""
    from prune.reconstruct import match_batch_statistics

    model, _ = load_model(yolov5n_pt, fuse=False)
    calib = torch.rand(4, 3, 64, 96)

    def outputs():
        with torch.no_grad():
            eval_raw = model.eval()(calib, raw=True)
            for m in model.modules():  # a training-mode pass that leaves the running statistics alone
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.momentum = 0.0
            train_raw = model.train()(calib, raw=True)
        return torch.cat([t.flatten() for t in eval_raw]), torch.cat([t.flatten() for t in train_raw])

    ref, before = outputs()
    with torch.no_grad():
        assert match_batch_statistics(model, calib, chunk=len(calib)) == 57  # every BatchNorm of yolov5n
    after_eval, after_train = outputs()
    rel = lambda a: float((a - ref).norm() / ref.norm())  # noqa: E731
    assert rel(after_eval) < 1e-5 and rel(after_train) < 1e-5  # measured 4e-7 and 3e-7
    assert rel(before) > 0.1  # measured 0.31


def test_pruned_checkpoint_round_trips(tmp_path):
    model = _model_with_dead_channels()
    pruned, _, _ = prune(model, ratio=None, threshold=1e-9, round_to=1)
    atomic_save(make_checkpoint(pruned, ["a", "b", "c"]), tmp_path / "pruned.pt")
    loaded, ckpt = load_model(tmp_path / "pruned.pt", fuse=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(x), pruned.eval()(x), atol=1e-6)
    assert ckpt["arch"]["channels"]["model.21"] == pruned.model[21].conv.out_channels
    assert "torch_pruning" not in json.dumps(ckpt["arch"])  # plain spec, nothing from the pruning library


def test_plan_layer_min_keep_round_to_and_refusal():
    scores = torch.tensor([0.0, 0.1, 0.5, 0.9, 0.05, 0.7, 0.3, 0.2, 0.8, 0.6])
    plan = plan_layer("L", scores, thr=0.55, min_keep=0.1, round_to=1)
    assert plan.keep == [3, 5, 8, 9] and not plan.clamped
    plan = plan_layer("L", scores, thr=0.55, min_keep=0.1, round_to=8)
    assert len(plan.keep) == 8 and set(plan.keep) >= {3, 5, 8, 9}  # rounded up with the next best
    plan = plan_layer("L", scores, thr=5.0, min_keep=0.3, round_to=1)
    assert plan.clamped and plan.keep == [3, 5, 8]
    from detect.errors import UsageError

    with pytest.raises(UsageError, match="would remove every channel of L"):
        plan_layer("L", scores, thr=5.0, min_keep=0.0, round_to=1)


def test_coco128_ratio_half_halves_gflops(yolov5n_pt):
    model, _ = load_model(yolov5n_pt, fuse=False)
    g0 = count_gflops(model, (384, 640))
    pruned, _, _ = prune(model, ratio=0.5, threshold=None, min_keep=0.1, round_to=8)
    assert count_gflops(pruned, (384, 640)) <= 0.55 * g0


def _run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_cli_end_to_end_and_bad_input(tmp_path, tiny_synthetic):
    from detect.data.synthetic import CLASSES

    ckpt = tmp_path / "model.pt"
    atomic_save(make_checkpoint(build_model(default_arch("yolov5n", nc=len(CLASSES))), CLASSES), ckpt)
    out = tmp_path / "prune"
    r = _run(
        "-m",
        "prune",
        "--weights",
        str(ckpt),
        "--data",
        str(tiny_synthetic),
        "--ratio",
        "0.3",
        "--strategy",
        "gamma",
        "--img",
        "64",
        "--batch",
        "2",
        "--finetune-epochs",
        "1",
        "--distill",
        "--latency-iters",
        "2",
        "--workers",
        "0",
        "--finetune-hyp",
        "configs/hyp/rewind.yaml",
        "--set",
        "warmup_epochs=0",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "does not look sparsity-trained" in r.stderr and "median" in r.stderr
    rep = json.loads((out / "report.json").read_text())
    for key in (
        "params_before",
        "params_after",
        "gflops_before",
        "gflops_after",
        "map50_95_before",
        "map50_95_pruned",
        "map50_95_finetuned",
        "layers",
        "onnx_latency_ms",
        "onnx_latency_ms_single_thread",
    ):
        assert key in rep, key
    assert "| the same, one thread |" in (out / "report.md").read_text()
    assert rep["params_after"] < rep["params_before"] and rep["layers"][0].keys() == {"name", "kept", "total"}
    assert (out / "gamma.png").is_file() and (out / "report.md").read_text().startswith("# Pruning report")
    assert rep["finetune_hyp"] == "configs/hyp/rewind.yaml" and rep["hyp"].endswith("recover.yaml")
    assert "lr0: 0.01\n" in (out / "finetune" / "hyp.yaml").read_text()  # the fine-tuning ran with its own file
    row = (out / "finetune" / "results.csv").read_text().splitlines()
    header, last = row[0].split(","), row[-1].split(",")
    assert float(last[header.index("train/distill")]) >= 0  # the distillation term is a column of its own
    v = run_cli("detect.val", "--weights", out / "pruned.pt", "--data", tiny_synthetic, "--img", "64")
    assert v.returncode == 0, v.stderr
    # the refusals in this process (the CLI's start-up was just tested end to end)
    bad = run_cli("prune", "--weights", ckpt, "--data", tiny_synthetic, "--ratio", "1.5", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "--ratio must be in (0, 1)" in bad.stderr
    bad = run_cli("prune", "--weights", ckpt, "--data", tiny_synthetic, "--gflops", "1.2", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "--gflops must be in (0, 1)" in bad.stderr
    diverged = run_cli("prune", "--weights", ckpt, "--data", tiny_synthetic, "--ratio", "0.3", "--img", "64",
                       "--batch", "2", "--finetune-epochs", "1", "--latency-iters", "0", "--workers", "0", "--set",
                       "warmup_epochs=0", "nominal_batch=2", "lr0=1e9", "--out", tmp_path / "diverged")
    assert diverged.returncode == 1 and "Traceback" not in diverged.stderr, diverged.stderr
    assert "error: recovery training diverged: non-finite loss" in diverged.stderr
    assert (tmp_path / "diverged" / "pruned_untuned.pt").is_file()


def test_sparsity_training_is_recorded_and_quoted_by_the_report(tmp_path, tiny_synthetic):
    """The trainer stores where |gamma| started and ended; the prune report shows the move."""
    import csv

    from detect import train
    from detect.weights import load_checkpoint
    from prune.__main__ import main as prune_main

    run = tmp_path / "sparse"
    common = ["--data", str(tiny_synthetic), "--img", "64", "--batch", "4", "--workers", "0", "--device", "cpu"]
    train.train(
        train.parse_args(
            [*common, "--model", "yolov5n", "--epochs", "2", "--out", str(run), "--set", "warmup_epochs=0"]
            + ["nominal_batch=4", "sparsity=0.5"]
        )
    )
    g = load_checkpoint(run / "weights" / "last.pt")["meta"]["bn_gamma"]
    assert g["sparsity"] == 0.5 and g["start"]["median"] == pytest.approx(1.0)  # BatchNorm init
    assert g["now"]["median"] < g["start"]["median"] - 0.05
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert float(rows[-1]["gamma_median"]) == pytest.approx(g["now"]["median"], rel=1e-4)
    assert float(rows[0]["gamma_median"]) > float(rows[-1]["gamma_median"])

    out = tmp_path / "prune"
    args = [*common, "--weights", str(run / "weights" / "last.pt"), "--ratio", "0.3", "--latency-iters", "0"]
    assert prune_main([*args, "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["sparsity_training"] == {"strength": 0.5, "start": g["start"], "end": g["now"]}
    assert "moved BatchNorm |gamma| toward zero" in (out / "report.md").read_text()


def test_collapse_guard_judges_only_the_first_epoch():
    from prune.pipeline import CollapseGuard

    class FakeRun:
        halted = None

        def halt(self, reason):
            self.halted = reason

    run, guard = FakeRun(), CollapseGuard(0.06)
    guard.on_epoch_end(run, 0, {"map50_95": 0.07})  # the first epoch holds
    guard.on_epoch_end(run, 1, {"map50_95": 0.0})  # later dips are fine-tuning's own business
    assert run.halted is None
    run, guard = FakeRun(), CollapseGuard(0.06)
    guard.on_epoch_end(run, 0, {"map50_95": 0.0})
    assert "collapsed" in run.halted and "0.0000 after epoch 1" in run.halted


def test_a_collapsed_fine_tuning_starts_again_from_the_surgery_with_the_gentle_recipe(tmp_path, monkeypatch):
    import prune.pipeline as pipeline
    from detect.train import FitResult
    from prune.config import PruneConfig

    calls = []

    def fake_finetune(c, checkpoint, epochs, out, share=None, hyp_file=None, floor=None):
        calls.append((Path(checkpoint).name, out.name, Path(hyp_file).name, floor, epochs))
        return FitResult(halted="fine-tuning collapsed" if len(calls) == 1 else None)

    monkeypatch.setattr(pipeline, "finetune", fake_finetune)
    c = PruneConfig(weights=tmp_path / "w.pt", data="d.yaml", out=tmp_path, finetune_hyp="configs/hyp/rewind.yaml", ratio=0.5,
                    finetune_epochs=3)
    _, recipe, collapsed = pipeline.adaptive_finetune(c, tmp_path / "surgery.pt", 0.25)
    assert calls == [("surgery.pt", "finetune", "rewind.yaml", 0.0625, 3),
                     ("surgery.pt", "finetune_gentle", "recover.yaml", None, 2)]  # 3 epochs in all
    assert recipe.endswith("recover.yaml") and collapsed == "fine-tuning collapsed"


def test_collapse_guard_validates_the_first_epoch_itself_when_the_run_does_not(tmp_path, tiny_synthetic):
    """The proofs validate only the last epoch; the guard still judges the first, without choosing best.pt."""
    from detect.hyp import load_hyp
    from detect.train import TrainConfig, fit
    from detect.train.callbacks import default_callbacks
    from prune.pipeline import CollapseGuard

    config = TrainConfig(data=str(tiny_synthetic), model="yolov5n", out=tmp_path / "r", img=64, epochs=3, batch=2,
                         workers=0, val_interval=3, device="cpu", quiet=True,
                         hyp=load_hyp(None, {"warmup_epochs": 0.0, "nominal_batch": 2}))
    result = fit(config, callbacks=[*default_callbacks(config.out, False, True), CollapseGuard(1.01)])
    assert result.halted and "after epoch 1" in result.halted
    assert (tmp_path / "r/results.csv").read_text().count("\n") == 2  # the header and epoch 1
