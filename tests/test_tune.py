"""python -m detect.tune: the space file's checks, workers sharing a journal, pruning, a killed worker, PostgreSQL,
and the two-objective study (fitness against ONNX Runtime latency: the Pareto front)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from detect.data.config import load_data_config
from detect.errors import UsageError
from detect.model import build_model, default_arch
from detect.tune.space import SearchSpace
from detect.tune.study import open_storage
from detect.weights import atomic_save, load_checkpoint, make_checkpoint
from tests.clirun import run_cli
from tests.conftest import REPO, shared_path
from tests.pg import throwaway_postgres

TINY = ["--model", "yolov5n", "--img", "64", "--batch", "2", "--loader-workers", "0", "--device", "cpu",
        "--set", "warmup_epochs=0", "nominal_batch=2", "close_mosaic=0", "--save-period-min", "0"]


def _tune(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "detect.tune", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=500, env={**os.environ, **(env or {})})


def _rows(out: Path) -> list[dict]:
    return list(csv.DictReader(open(out / "trials.csv")))


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, words", [
    ("lr00: {low: 0.001, high: 0.1}", ["lr00", "not a hyperparameter"]),
    ("lr0: {low: 0.1, high: 0.001}", ["lr0", "low 0.1 is above high 0.001"]),
    ("weight_decay: {low: 0, high: 0.001, log: true}", ["weight_decay", "positive low bound"]),
    ("optimizer: {choices: [SGD, Adam]}", ["optimizer", "'Adam' refused"]),
    ("sam: {low: 0, high: 1}", ["sam", "choices"]),
    ("img: {low: 300, high: 640}", ["img", "multiples of 32"]),
    ("weights: {choices: [no/such/slim.pt]}", ["weights", "no such file: no/such/slim.pt"]),
    ("weights: {low: 0, high: 1}", ["weights", "choices"]),
])
def test_a_bad_space_names_its_key(text, words):
    with pytest.raises(UsageError) as e:
        SearchSpace.from_dict(__import__("yaml").safe_load(text), "space.yaml")
    assert all(w in str(e.value) for w in words), str(e.value)


def test_the_shipped_space_covers_the_optimiser_the_loss_and_the_augmentation():
    names = {p.name for p in SearchSpace.load(REPO / "configs/tune/default.yaml").params}
    assert {"lr0", "momentum", "weight_decay", "warmup_epochs"} <= names  # optimiser
    assert {"box", "cls", "obj"} <= names  # loss gains
    assert {"hsv_h", "scale", "mosaic", "fliplr"} <= names  # augmentation
    lr0 = next(p for p in SearchSpace.load(REPO / "configs/tune/default.yaml").params if p.name == "lr0")
    assert lr0.log and lr0.low == 1e-4  # 1.0e-4 written with a dot; 1e-4 (a string to PyYAML) is read too
    assert SearchSpace.from_dict({"lr0": {"low": "1e-4", "high": 0.1, "log": True}}).params[0].low == 1e-4


def test_bad_space_file_exits_2_with_one_line(tmp_path, tiny_synthetic):
    r = run_cli("detect.tune", "--data", tiny_synthetic, "--space", _space(tmp_path, "lr0: {low: 0.1, high: 0.01}\n"),
                "--out", tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "lr0" in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_two_workers_share_a_journal_and_each_trial_trains_with_its_recorded_values(tmp_path, tiny_synthetic):
    space = _space(tmp_path, "lr0: {low: 1.0e-4, high: 0.05, log: true}\nmosaic: {low: 0.0, high: 1.0}\n")
    out = tmp_path / "study"
    r = _tune("--data", tiny_synthetic, *TINY, "--epochs", 1, "--space", space, "--trials", 4, "--workers", 2,
              "--out", out)
    assert r.returncode == 0, r.stderr
    rows = _rows(out)
    assert [x["state"] for x in rows].count("COMPLETE") == 4 and len(rows) == 4
    assert {x["worker"] for x in rows} == {"0", "1"}  # both workers ran trials
    assert rows[0]["lr0"] == "0.01"  # the study starts from the base hyperparameters
    assert len({(x["lr0"], x["mosaic"]) for x in rows}) == 4  # no two trials with the same values
    study = optuna.load_study(study_name="tune", storage=open_storage(None, out))
    for t in study.trials:  # the values a trial records are those it trained with
        hyp = load_checkpoint(out / "trials" / f"{t.number:04d}" / "weights" / "last.pt")["train"]["hyp"]
        assert hyp["lr0"] == t.params["lr0"] and hyp["mosaic"] == t.params["mosaic"]
    assert (out / "best.pt").is_symlink() and (out / "best.pt").resolve().is_file()
    assert "lr0" in (out / "best_hyp.yaml").read_text() and (out / "report.html").stat().st_size > 1000
    again = run_cli("detect.tune", "--data", tiny_synthetic, *TINY, "--epochs", 1, "--space", space, "--trials", 4,
                    "--out", out)  # in this process: one worker, and the CLI's start-up was just tested
    assert again.returncode == 0 and len(_rows(out)) == 4, again.stderr  # --trials is the total: nothing to run


def test_a_trial_with_an_absurd_lr0_is_pruned_before_its_last_epoch(tmp_path, persons):
    """The first trial (base lr0 1e-4) sets the median at each epoch; lr0 in [0.3, 0.6] wrecks the model."""
    weights = shared_path("weights/yolov5n.pt")
    out = tmp_path / "study"
    r = run_cli("detect.tune", "--data", persons, "--weights", weights, "--img", "160", "--batch", "4",
                "--loader-workers", "0", "--device", "cpu", "--set", "warmup_epochs=0", "nominal_batch=4", "mosaic=0",
                "lr0=0.0001", "--space", _space(tmp_path, "lr0: {low: 0.3, high: 0.6}\n"), "--epochs", 3,
                "--trials", 2, "--pruner", "median", "--out", out)  # one worker: in this process
    assert r.returncode == 0, r.stderr
    base, absurd = _rows(out)
    assert base["state"] == "COMPLETE" and float(base["fitness"]) > 0.05, base
    assert absurd["state"] == "PRUNED" and absurd["fitness_epoch3"] == "", absurd
    assert "pruned by the median pruner" in absurd["reason"]


def test_a_killed_worker_leaves_its_trial_failed_and_the_resumed_study_reaches_n(tmp_path, tiny_synthetic):
    space = _space(tmp_path, "lr0: {low: 1.0e-4, high: 0.05, log: true}\n")
    out = tmp_path / "study"
    args = ["--data", tiny_synthetic, *TINY[:-2], "--save-period-min", "0.0001", "--epochs", 1, "--space", space,
            "--trials", 2, "--out", out]
    killed = _tune(*args, env={"DETECT_TEST_SIGKILL_AT": "3"})  # SIGKILL mid-epoch 1 of the first trial
    assert killed.returncode == -9, killed.stderr
    r = run_cli("detect.tune", *args)  # the resumed study: one worker, in this process
    assert r.returncode == 0 and "had lost their worker" in r.stderr, r.stderr
    rows = _rows(out)
    assert rows[0]["state"] == "FAIL" and "died mid-trial" in rows[0]["reason"]
    retry = next(x for x in rows if x["retry_of"] == "0")
    assert retry["state"] == "COMPLETE" and retry["lr0"] == rows[0]["lr0"]  # the same values, run again
    assert sum(x["state"] in ("COMPLETE", "PRUNED") for x in rows) == 2


def test_two_workers_on_two_processes_share_a_postgresql_study(tmp_path, tiny_synthetic):
    space = _space(tmp_path, "lr0: {low: 1.0e-4, high: 0.05, log: true}\n")
    with throwaway_postgres() as url:
        out = tmp_path / "study"
        r = run_cli("detect.tune", "--data", tiny_synthetic, *TINY, "--epochs", 1, "--space", space, "--trials", 3,
                    "--workers", 2, "--storage", url, "--out", out)  # this process starts the two worker processes
        assert r.returncode == 0, r.stderr
        study = optuna.load_study(study_name="tune", storage=url)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(done) == 3 and {t.user_attrs["worker"] for t in done} == {0, 1}
        assert not (out / "study.journal").exists()


def test_lr_find_suggests_the_steepest_descent_of_the_smoothed_loss():
    """A hand-made curve: flat, falling fastest (per decade) at 1e-3, lowest at 1e-1, then diverging."""
    import numpy as np

    from detect.tune.lr_find import _suggest

    lrs = list(10 ** np.linspace(-6, 0, 61))
    x = np.log10(lrs)
    loss = list(2.0 - 1.0 / (1 + np.exp(-3 * (x + 3))) + np.where(x > -1, (x + 1) ** 2 * 5, 0))
    r = _suggest(lrs, loss, loss, diverged=True)
    assert r.suggested_lr0 == pytest.approx(1e-3, rel=0.3) and r.min_loss_lr == pytest.approx(1e-1, rel=0.3)


def test_lr_find_writes_its_curve_and_suggestion(tmp_path, tiny_synthetic):
    import json

    from detect.tune.__main__ import main

    assert main(["--lr-find", "--data", str(tiny_synthetic), *TINY, "--lr-steps", "20", "--out", str(tmp_path)]) == 0
    found = json.loads((tmp_path / "lr_find/lr_find.json").read_text())
    assert 1e-6 <= found["suggested_lr0"] <= 1.0 and found["base_lr0"] == 0.01
    rows = list(csv.DictReader(open(tmp_path / "lr_find/lr_find.csv")))
    assert 10 <= len(rows) <= 20 and float(rows[-1]["lr"]) > float(rows[0]["lr"]) * 10
    assert (tmp_path / "lr_find/lr_find.png").stat().st_size > 10_000


def test_sigint_fails_the_running_trial_queues_it_again_and_exits_130(tmp_path, tiny_synthetic):
    import signal
    import time

    space = _space(tmp_path, "lr0: {low: 1.0e-4, high: 0.05, log: true}\n")
    out = tmp_path / "study"
    args = ["--data", tiny_synthetic, *TINY, "--epochs", 3, "--space", space, "--trials", 1, "--out", out]
    p = subprocess.Popen([sys.executable, "-m", "detect.tune", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "trials/0000/hyp.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 130, err
    first = _rows(out)[0]
    assert first["state"] == "FAIL" and first["reason"] == "interrupted by SIGINT"
    study = optuna.load_study(study_name="tune", storage=open_storage(None, out))
    assert [t.user_attrs.get("retry_of") for t in study.trials if t.state == optuna.trial.TrialState.WAITING] == [0]


def test_storage_urls_sqlite_refused_and_passwords_never_printed(tmp_path):
    from detect.tune.study import _redact

    with pytest.raises(UsageError, match="SQLite is not safe for parallel workers"):
        open_storage("sqlite:///x.db", tmp_path)
    assert _redact("postgresql://team:s3cret@db:5432/optuna") == "postgresql://team:***@db:5432/optuna"
    assert _redact("postgresql://team@db/optuna") == "postgresql://team@db/optuna"
    with pytest.raises(UsageError) as e:  # nothing listens on port 1
        open_storage("postgresql://team:s3cret@127.0.0.1:1/optuna", tmp_path)
    assert "s3cret" not in str(e.value) and "cannot connect" in str(e.value)


def test_a_trial_started_past_n_by_a_race_stands_down():
    """Two workers each saw room for one more trial and both asked: the later-numbered one is surplus."""
    from detect.tune.study import surplus

    study = optuna.create_study()
    trials = [study.ask() for _ in range(4)]  # all running: 0, 1, 2 claimed, 3 started by the race
    assert [surplus(t, 3) for t in trials] == [False, False, False, True]
    study.tell(trials[0], state=optuna.trial.TrialState.FAIL)  # a failed trial is run again: room for one
    assert not surplus(trials[3], 3)


def _checkpoints(tmp_path: Path, data: Path) -> list[Path]:
    """yolov5n for the data, and the same wiring at half its widths (what a slimmed model's choice looks like)."""
    names = load_data_config(data).names
    arch = default_arch("yolov5n", nc=len(names))
    narrow = {k: v for k, v in arch.items() if k != "channels"} | {"width_multiple": 0.125}
    paths = []
    for name, a in (("full.pt", arch), ("narrow.pt", narrow)):
        atomic_save(make_checkpoint(build_model(a), names), tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def test_two_objectives_keep_the_pareto_front_of_fitness_and_latency(tmp_path, tiny_synthetic):
    full, narrow = _checkpoints(tmp_path, tiny_synthetic)
    space = _space(tmp_path, f"img: {{choices: [64, 96]}}\nweights: {{choices: [{full}, {narrow}]}}\n")
    out = tmp_path / "study"
    r = run_cli("detect.tune", "--data", tiny_synthetic, *TINY[2:], "--weights", full, "--epochs", 1, "--space", space,
                "--trials", 4, "--objectives", "fitness", "latency", "--latency-iters", 3, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "objectives fitness, latency (nsga2)" in r.stdout
    done = [x for x in _rows(out) if x["state"] == "COMPLETE"]
    assert len(done) == 4 and all(float(x["latency_ms"]) > 0 for x in done)
    assert done[0]["img"] == "64" and done[0]["weights"] == str(full)  # the study starts from the base run
    rows = [x for x in done if not x["duplicate_of"]]  # a re-drawn point is its first trial's, trained once
    point = {x["number"]: (float(x["fitness"]), float(x["latency_ms"])) for x in rows}

    def beaten(n):  # another trial at least as good on both and better on one
        f, ms = point[n]
        return any(g >= f and m <= ms and (g, m) != (f, ms) for k, (g, m) in point.items() if k != n)

    front = list(csv.DictReader(open(out / "pareto.csv")))
    assert {x["number"] for x in front} == {n for n in point if not beaten(n)}
    assert [float(x["latency_ms"]) for x in front] == sorted(float(x["latency_ms"]) for x in front)  # fastest first
    for x in rows:  # each trial trained the architecture saved in the weights it drew
        ckpt = load_checkpoint(out / "trials" / f"{int(x['number']):04d}" / "weights" / "last.pt")
        assert ckpt["arch"]["width_multiple"] == (0.125 if x["weights"] == str(narrow) else 0.25)
    assert (out / "pareto.png").stat().st_size > 1000 and "Pareto front" in (out / "report.html").read_text()
    assert (out / "best.pt").resolve().is_file() and "weights:" in (out / "best_hyp.yaml").read_text()


@pytest.mark.parametrize("flags, words", [
    (["--pruner", "hyperband"], ["--pruner hyperband", "one objective"]),
    (["--sampler", "cmaes"], ["--sampler cmaes", "nsga2"]),
    (["--latency-iters", "0"], ["--latency-iters"]),
])
def test_two_objectives_refuse_what_cannot_serve_them(tmp_path, tiny_synthetic, flags, words):
    r = run_cli("detect.tune", "--data", tiny_synthetic, *TINY, "--objectives", "fitness", "latency", *flags,
                "--out", tmp_path)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and all(w in lines[0] for w in words), r.stderr


def test_the_front_is_the_trials_nobody_beats_on_both_fastest_first_each_point_once():
    from detect.tune.report import pareto_front

    study = optuna.create_study(directions=["maximize", "minimize"])
    points = [(0.50, 10.0), (0.45, 6.0), (0.44, 7.0), (0.50, 12.0), (0.30, 2.0), (0.45, 6.0)]  # (fitness, ms)
    for i, values in enumerate(points):
        attrs = {"duplicate_of": 1} if i == 5 else {}  # trial 5 re-drew trial 1's values
        study.add_trial(optuna.trial.create_trial(values=list(values), params={"img": 320},
                                                  distributions={"img": optuna.distributions.CategoricalDistribution([320])},
                                                  user_attrs=attrs))
    # 2 loses to 1 (slower and worse), 3 to 0 (as good, slower); 5 is 1's point
    assert [t.number for t in pareto_front(study)] == [4, 1, 0]


def test_a_study_reopened_with_other_objectives_is_refused(tmp_path, tiny_synthetic):
    optuna.create_study(study_name="tune", storage=open_storage(None, tmp_path), directions=["maximize", "minimize"])
    r = run_cli("detect.tune", "--data", tiny_synthetic, *TINY, "--out", tmp_path)  # --objectives fitness
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "--objectives fitness latency" in lines[0], r.stderr
