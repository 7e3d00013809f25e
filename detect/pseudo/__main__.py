"""python -m detect.pseudo: see ``python -m detect.pseudo --help``. Exit status: 0 done; 2 bad input."""

from __future__ import annotations

import argparse
from pathlib import Path

from detect import cli
from detect.infer.options import add_inference_args, check_inference_args, inference_config
from detect.pseudo.label import UNCERTAIN, PseudoConfig, label

EXAMPLES = """examples:
  python -m detect.pseudo --weights best.pt --source unlabeled/images --data data.yaml --img 320 --out runs/pseudo
  python -m detect.pseudo --weights a.pt b.pt --fuse wbf --augment ... --precision 0.9 --out runs/pseudo
  python -m detect.train --data runs/pseudo/data.yaml --weights best.pt ...      trains on both"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m detect.pseudo",
        description="Label unlabelled images with a model or an ensemble, each class's score threshold chosen on "
        "the data's labelled val split for a precision; writes OUT/data.yaml (the training images plus these).",
        epilog=EXAMPLES, formatter_class=cli.HelpFormatter)
    p.add_argument("--weights", required=True, nargs="+", help="the teacher: one model, or several fused (--fuse)")
    p.add_argument("--source", required=True, help="unlabelled images: a folder, a glob or a file")
    p.add_argument("--data", required=True, help="the labelled data.yaml: val chooses the thresholds, train is kept")
    p.add_argument("--out", type=Path, default=Path("runs/pseudo"), help="images/, labels/, data.yaml, pseudo.json")
    p.add_argument("--img", type=int, nargs="+", default=[640], help="inference size(s); several are fused")
    p.add_argument("--precision", type=float, default=0.9,
                   help="the precision each class's kept boxes reach on val (higher: fewer, cleaner labels)")
    p.add_argument("--drop-precision", type=float, default=0.5,
                   help="below the score where precision falls to this, a box counts as background; between the two "
                   "it is uncertain (see --uncertain)")
    p.add_argument("--uncertain", choices=UNCERTAIN, default="ignore",
                   help="an uncertain box: written as an ignore region (class -1: neither object nor background in "
                   "the loss; the default), or its image left out. ccp: docs/competition.md")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--batch", type=int, default=16, help="batch size of the val pass")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes of the val pass")
    add_inference_args(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.conf, args.iou, args.max_det = 0.001, 0.6, 300  # every box: the thresholds are chosen afterwards
    check_inference_args(args)
    cli.check_range("--precision", args.precision, 0, 1, low_open=True)
    label(PseudoConfig(weights=args.weights, source=args.source, data=args.data, out=args.out, img=args.img,
                       precision=args.precision, drop_precision=args.drop_precision, inference=inference_config(args),
                       device=args.device, batch=args.batch, workers=args.workers, uncertain=args.uncertain))
    return 0


if __name__ == "__main__":
    cli.run(main)
