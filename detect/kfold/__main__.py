"""python -m detect.kfold: see ``python -m detect.kfold --help``.

Exit status: 0 done; 2 bad input; 130 / 143 when a signal stopped a fold's training (run the same
command again: finished folds are kept, the stopped one resumes from its last.pt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detect import cli
from detect.kfold.run import KFoldConfig, run_kfold
from detect.train.config import add_train_options, embedded_config

EXAMPLES = """examples:
  python -m detect.kfold --data data.yaml --folds 5 --weights yolov5n.pt --img 320 --epochs 10 --out runs/kfold
  python -m detect.kfold ... --group-by video        frames of one video never on both sides of a fold
  python -m detect.predict --weights $(cat runs/kfold/ensemble.txt) --fuse wbf --source test/ --submission sub.csv"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m detect.kfold",
        description="Train K models on K folds of the training images; predict each fold with the model that did "
        "not see it. Writes DIR/oof.json, oof_metrics.json, thresholds.json, ensemble.txt and DIR/foldK/.",
        epilog=EXAMPLES, formatter_class=cli.HelpFormatter)
    p.add_argument("--out", type=Path, default=Path("runs/kfold"), help="the k-fold folder (DIR)")
    p.add_argument("--folds", type=int, default=5, help="K")
    p.add_argument("--group-by", default=None,
                   help="a meta.csv column (video, camera...) whose images always share a fold")
    p.add_argument("--meta", type=Path, default=None, help="per-image CSV (default: meta.csv beside data.yaml)")
    add_train_options(p.add_argument_group("each fold's training (python -m detect.train's options)"), skip=("out",))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    base = embedded_config(args, argv, args.out / "base")
    try:
        run_kfold(KFoldConfig(base=base, out=args.out, folds=args.folds, group_by=args.group_by, meta=args.meta,
                              seed=args.seed))
    except KeyboardInterrupt:
        print("stopped; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    cli.run(main)
