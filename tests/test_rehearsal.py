"""benchmarks/rehearsal.py's driver: summary.json's keys, summary.md's table, and resuming finished stages."""

from __future__ import annotations

import json

import pytest

from benchmarks import rehearsal


def test_rehearsal_writes_the_summary_and_resumes_finished_stages(tmp_path, monkeypatch):
    ran = []

    def stage(name, **state):
        def fn(r, seen):
            ran.append(name)
            if name == "slimming" and len(ran) == 4 and fail:
                raise RuntimeError("killed")
            return rehearsal.Stage(name, f"{name}/out", f"{name} figure", state=state)

        fn.__name__ = f"{name}_stage"
        return fn

    stages = (stage("analysis"), stage("training", trained="train/weights/best.pt"),
              stage("validation", trained_map50_95=0.41), stage("slimming", pruned="prune/pruned.pt",
                                                                pruned_map50_95=0.37, pruned_gflops_ratio=0.59,
                                                                kept="pruned.pt: fine-tuning's best epoch"),
              stage("submission", submission="submission.csv"))
    monkeypatch.setattr(rehearsal, "STAGES", stages)
    r = rehearsal.Rehearsal(tmp_path / "d.yaml", tmp_path / "out", tmp_path / "w.pt")
    fail = True
    with pytest.raises(RuntimeError):
        rehearsal.rehearse(r)
    fail = False
    summary = rehearsal.rehearse(r)
    assert ran == ["analysis", "training", "validation", "slimming", "slimming", "submission"]  # resumed
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in ("img", "stages", "trained_weights", "trained_map50_95", "pruned_weights", "pruned_map50_95",
                "pruned_gflops_ratio", "submission"):
        assert key in saved, key
    assert saved == json.loads(json.dumps(summary))
    assert [s["stage"] for s in saved["stages"]] == ["analysis", "training", "validation", "slimming", "submission"]
    assert set(saved["stages"][0]) == {"stage", "output", "figure", "seconds"}
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| stage | output | key figure | wall time |" in md and "| slimming | `slimming/out` |" in md
