"""benchmarks/plot_recovery.py: curves on different training sets compared by images seen."""

from __future__ import annotations

import pytest

from benchmarks import plot_recovery

HEADER = "epoch,train/box,map50_95\n"


def test_curves_skip_unvalidated_epochs_and_scale_by_the_training_set(tmp_path, capsys):
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    small.write_text(HEADER + "1,0.1,nan\n2,0.1,0.40\n3,0.1,\n4,0.1,0.45\n")
    large.write_text(HEADER + "1,0.1,0.42\n2,0.1,0.47\n")
    assert plot_recovery.read_curve(small, 1000) == ([2.0, 4.0], [0.40, 0.45])
    assert plot_recovery.read_curve(large, 2000) == ([2.0, 4.0], [0.42, 0.47])  # same images seen as small's
    out = tmp_path / "fig" / "rec.png"
    plot_recovery.main(["--curve", "small", str(small), "1000", "--curve", "large", str(large), "2000",
                        "--line", "target", "0.49", "--start", "0.25", "--out", str(out)])
    assert out.stat().st_size > 10_000
    assert "large: 2.0k 0.4200, 4.0k 0.4700" in capsys.readouterr().out


def test_a_run_never_validated_is_named(tmp_path):
    never = tmp_path / "results.csv"
    never.write_text(HEADER + "1,0.1,nan\n")
    with pytest.raises(SystemExit, match="results.csv: no validated epoch"):
        plot_recovery.read_curve(never, 10)
