"""python -m detect.train: see ``python -m detect.train --help``.

Exit status: 0 done; 1 non-finite loss or an output that cannot be written; 2 bad input or a
locked output folder; 128 + N after signal N was honoured (130 SIGINT, 143 SIGTERM), with
last.pt saved for --resume.
"""

from __future__ import annotations

import sys

from detect import cli
from detect.train import config_from_args, fit, parse_args
from detect.train.distributed import shutdown


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        result = fit(config_from_args(args))
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        shutdown()
    return 128 + result.stopped if result.stopped else 0


if __name__ == "__main__":
    cli.run(main)
