"""Training faults as users meet them: resume from the checkpoint alone, a locked output folder,
SIGTERM to the process group, a full disk, a NaN on one DDP rank."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from detect.errors import OutputError, UsageError
from detect.outputs import atomic_write_bytes
from detect.train import TrainConfig, fit
from detect.train.config import config_from_args, parse_args
from detect.train.faults import RunLock
from detect.weights import atomic_save, load_checkpoint
from tests.clirun import run_cli

REPO = Path(__file__).resolve().parents[1]
TINY = ["warmup_epochs=0", "nominal_batch=2", "mosaic=0.5", "close_mosaic=1"]


def _cli(data, out, *extra, epochs=2):
    return ["-m", "detect.train", "--data", str(data), "--model", "yolov5n", "--img", "64", "--epochs", str(epochs),
            "--batch", "2", "--workers", "0", "--device", "cpu", "--out", str(out), "--set", *TINY, *extra]


def _run(args, timeout=600, **kw):
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, **kw)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith("note:")]


class _StopAfter:
    def __init__(self, n):
        self.n, self.calls = n, 0

    @property
    def signal(self):
        self.calls += 1
        return signal.SIGTERM if self.calls > self.n else None


@pytest.fixture
def stopped_run(tmp_path, tiny_synthetic):
    """A run stopped after 3 optimiser steps: its last.pt holds mid-epoch training state."""
    out = tmp_path / "run"
    config = config_from_args(parse_args(_cli(tiny_synthetic, out)[2:]))
    config.quiet = True
    assert fit(config, interrupt=_StopAfter(3)).stopped == signal.SIGTERM
    return out / "weights" / "last.pt"


def test_resume_needs_only_the_checkpoint(stopped_run):
    r = _run(["-m", "detect.train", "--resume", str(stopped_run)])
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(stopped_run)["meta"]["epoch"] == 2
    run = stopped_run.parent.parent
    assert [line.split(",")[0] for line in (run / "results.csv").read_text().splitlines()[1:]] == ["1", "2"]


def test_resume_with_out_finds_last_and_refuses_changes(stopped_run, tiny_synthetic):
    run = stopped_run.parent.parent
    r = run_cli("detect.train", "--resume", "--out", run, "--epochs", "5", "--set", "lr0=0.5")
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "--epochs 5 differs from the saved 2" in lines[0] and "lr0=0.5" in lines[0]


def test_old_checkpoint_missing_a_hyp_key_resumes(stopped_run, capsys):
    ckpt = load_checkpoint(stopped_run)
    del ckpt["train"]["hyp"]["warmup_max_share"]
    ckpt["train"]["args"] = ckpt["train"].pop("config")  # the key checkpoints had before fit()
    atomic_save(ckpt, stopped_run)
    config = TrainConfig.resumed(stopped_run)
    assert "predates hyperparameter warmup_max_share" in capsys.readouterr().err
    config.quiet = True
    result = fit(config)
    assert result.stopped is None and result.summary["epochs"] == 2


def test_second_run_into_a_locked_folder_exits_2_naming_the_holder(tmp_path, tiny_synthetic):
    out = tmp_path / "busy"
    with RunLock(out):
        r = _run(_cli(tiny_synthetic, out))
    lines = _error_lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and f"PID {os.getpid()}" in lines[0], r.stderr
    assert not (out / "results.csv").exists()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(str(dead.pid))
    with RunLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert f"stale lock of process {dead.pid}" in capsys.readouterr().err


def test_sigterm_to_the_process_group_saves_and_exits_143(tmp_path, tiny_synthetic):
    out = tmp_path / "term"
    args = _cli(tiny_synthetic, out, epochs=40)
    args[args.index("--workers") + 1] = "2"  # data workers in the group, as in real runs
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (out / "weights" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)  # as scancel, systemd or kill -- -PGID do
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "resume with" in stderr
    state = load_checkpoint(out / "weights" / "last.pt")["train"]
    assert state["epoch"] < 39


def test_fit_restores_signal_handlers(tmp_path, tiny_synthetic):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    config = config_from_args(parse_args(_cli(tiny_synthetic, tmp_path / "h", epochs=1)[2:]))
    config.quiet = True
    fit(config)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {r.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_keeps_the_previous_file_and_says_so(tiny_disk):
    path = tiny_disk / "last.pt"
    atomic_write_bytes(b"good", path)
    with pytest.raises(OutputError, match="No space left on device") as e:
        atomic_write_bytes(bytes(3 * 2**20), path)
    assert str(path) in str(e.value)
    assert path.read_bytes() == b"good" and [p.name for p in tiny_disk.iterdir()] == ["last.pt"]


def test_training_into_a_full_disk_is_one_line_and_exit_1(tiny_disk, tiny_synthetic):
    r = _run(_cli(tiny_synthetic, tiny_disk / "run", epochs=1))
    lines = _error_lines(r.stderr)
    assert r.returncode == 1 and len(lines) == 1 and "No space left on device" in lines[0], r.stderr
    assert str(tiny_disk) in lines[0]


def test_unwritable_out_fails_before_training(tmp_path, tiny_synthetic):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(OutputError, match="cannot write there"):
        fit(config_from_args(parse_args(_cli(tiny_synthetic, tmp_path / "file" / "run")[2:])))


def test_data_is_required_without_resume():
    with pytest.raises(UsageError, match="--data is required"):
        config_from_args(parse_args(["--epochs", "1"]))


def test_ddp_nan_on_one_rank_stops_every_rank(tmp_path, tiny_synthetic):
    env = {**os.environ, "DETECT_TEST_NAN_AT": "1:2"}
    args = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29523",
            *_cli(tiny_synthetic, tmp_path / "nan", epochs=5)]
    args[args.index("--batch") + 1] = "4"
    t0 = time.time()
    r = _run(args, env=env)
    assert r.returncode != 0 and time.time() - t0 < 120
    assert r.stderr.count("non-finite loss at epoch 1, iteration 3 (global step 2)") == 2, r.stderr[-3000:]


def test_init_distributed_picks_gloo_on_the_cpu_and_nccl_on_gpus(monkeypatch):
    """What init_distributed hands torch.distributed under torchrun's environment: gloo whenever the device is the
    CPU (or no GPU exists), NCCL otherwise, with a timeout long enough for rank 0's scoring and saving."""
    from detect.train import distributed

    calls = []
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, timeout: calls.append((backend, timeout)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.init_distributed("cpu") == (1, 1, 2)
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    distributed.init_distributed("cuda:1")
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    distributed.init_distributed(None)
    assert [b for b, _ in calls] == ["gloo", "nccl", "gloo"]
    assert all(t.total_seconds() >= 3600 for _, t in calls) and torch.distributed.is_gloo_available()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed.init_distributed("cpu") == (0, 0, 1) and len(calls) == 3  # one process: no group


def test_a_finished_run_exits_while_the_collector_has_not_freed_it(tmp_path, tiny_synthetic):
    """The training loader's persistent workers ignore SIGTERM, so any still alive at exit made
    multiprocessing's exit handler join them forever (a 30-epoch prune hung after its report). fit ends
    them itself: with the garbage collector off, no worker is left and the process exits."""
    args = _cli(tiny_synthetic, tmp_path / "gc", epochs=1)
    args[args.index("--workers") + 1] = "2"
    script = (
        "import gc, multiprocessing, sys\n"
        "from detect.train.config import config_from_args, parse_args\n"
        "from detect.train import fit\n"
        "gc.disable()\n"
        f"config = config_from_args(parse_args({args[2:]!r}))\n"
        "config.quiet = True\n"
        "fit(config)\n"
        "print('alive', len(multiprocessing.active_children()))\n"
    )
    r = _run(["-c", script], timeout=120)  # before the fix: a hang, hence the timeout
    assert r.returncode == 0 and "alive 0" in r.stdout, r.stderr


def test_validation_workers_survive_a_group_sigterm(tiny_synthetic):
    """A signal to the process group during validation must not kill its data workers (the main process
    honours the stop at the next step); they used to die and take the run down with a traceback."""
    from detect.data.config import load_data_config
    from detect.data.dataset import EvalDataset
    from detect.data.labels import scan_split

    samples, _ = scan_split(load_data_config(tiny_synthetic), "train", progress=False)
    it = iter(EvalDataset(samples, 64, 1).loader(2))
    next(it), next(it)  # batch k comes from worker k % 2: both workers have started and run init_worker
    for worker in it._workers:
        os.kill(worker.pid, signal.SIGTERM)
    time.sleep(0.5)
    assert len(list(it)) == len(samples) - 2


def test_sigkill_after_a_recovery_save_resumes_like_a_signal(tmp_path, tiny_synthetic):
    """A kill no handler sees (SIGKILL, the out-of-memory killer) right after a mid-epoch recovery save: the
    resumed run ends on the weights of a run never interrupted, as a signal-time last.pt does. Only the killed
    run needs a process of its own; the other two run in this one."""
    straight = tmp_path / "straight"
    r = run_cli(*_cli(tiny_synthetic, straight)[1:])
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "killed"
    r = _run(_cli(tiny_synthetic, out, "--save-period-min", "1e-9"), env={**os.environ, "DETECT_TEST_SIGKILL_AT": "3"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    state = load_checkpoint(out / "weights" / "last.pt")["train"]
    assert (state["epoch"], state["iteration"]) == (0, 4)  # global step 3 is batch 4 of 5 in epoch 1
    r = run_cli(*_cli(tiny_synthetic, out, "--resume")[1:])
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = load_checkpoint(straight / "weights" / "last.pt"), load_checkpoint(out / "weights" / "last.pt")
    for key in ("model", "ema"):
        for name, t in a[key].items():
            assert torch.allclose(t.float(), b[key][name].float(), rtol=1e-4, atol=1e-6), (key, name)
    assert a["train"]["ema_updates"] == b["train"]["ema_updates"]


def test_recovery_timer_fires_once_per_period(monkeypatch):
    from detect.train import state as state_mod

    now = [100.0]
    monkeypatch.setattr(state_mod.time, "monotonic", lambda: now[0])
    timer = state_mod.RecoveryTimer(10)
    now[0] += 599
    assert not timer.due()
    now[0] += 1
    assert timer.due() and not timer.due()  # 10 minutes since the start, then the clock restarts
    assert not state_mod.RecoveryTimer(0).due()
