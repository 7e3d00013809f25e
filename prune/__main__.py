"""Prune a YOLOv5 by BatchNorm scale factors (network slimming) or uniformly, recover, and report.

    python -m prune --weights W --data D (--ratio 0.5 | --threshold T) [--strategy gamma|uniform] \\
        [--steps K --step-epochs E --max-drop D] [--finetune-epochs N] [--distill] [--sensitivity] --out DIR

Writes DIR/pruned.pt (our checkpoint format with its new channel spec: it loads in detect.val,
detect.predict, detect.train and deploy.export), DIR/pruned_untuned.pt (or stepK/ per step),
DIR/report.json, DIR/report.md with gamma.png and layers.png, DIR/sensitivity.* with
--sensitivity, and the recovery/fine-tuning runs. Exit 1 when recovery training diverges,
128 + N when signal N stopped a run.
"""

from __future__ import annotations

import sys

from detect import cli
from prune.config import config_from_argv
from prune.pipeline import Stopped, run


def main(argv=None) -> int:
    config = config_from_argv(argv)
    try:
        run(config)
    except Stopped as e:
        return 128 + e.signal
    except FloatingPointError as e:  # recovery diverged: say so, and where the untuned weights are
        print(f"error: recovery training diverged: {e}. The pruned weights before it are under {config.out} "
              "(pruned_untuned.pt, stepK/); prune less per step (--steps) or lower lr0 (--set lr0=...)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
