"""What every CLI shares: one clear line and exit code 2 for bad input, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from detect.errors import DataError, OutputError, UsageError, WeightsError
from detect.paths import REPO

USER_ERRORS = (DataError, WeightsError, FileNotFoundError)


def run(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    try:
        code = main(argv)
    except (*USER_ERRORS, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except OutputError as e:  # the input was fine; the output could not be written
        print(f"error: {e}", file=sys.stderr)
        code = 1
    except ModuleNotFoundError as e:  # a third-party package the command needs (seen: ensemble-boxes on a GPU host)
        if not e.name or (REPO / e.name.split(".")[0]).is_dir():  # one of ours missing: a bug, not the environment
            raise
        print(f"error: this command needs the Python package {e.name!r}, which is not installed here: "
              "run make setup (or pip install -r requirements.txt)", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code or 0)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option, once: not where the text already says its default, nor for a flag
    or an option without one; the description and the examples epilog kept as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "(default" in text or action.default in (None, False, argparse.SUPPRESS) or action.default == []:
            return text
        return super()._get_help_string(action)


def select_device(name: str | None):
    """``cpu``, ``cuda`` or ``cuda:N``; a CUDA request without CUDA is a usage error."""
    import torch  # lazy: analysis imports detect.cli and must start without torch

    name = (name or ("cuda:0" if torch.cuda.is_available() else "cpu")).lower()
    if name.startswith("cuda") or name.isdigit():
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
        return torch.device(f"cuda:{name}" if name.isdigit() else name)
    if name != "cpu":
        raise UsageError(f"--device {name}: expected cpu, cuda or cuda:N")
    return torch.device("cpu")


def check_img(*sizes: int, flag: str = "--img") -> None:
    """Network input sizes: positive multiples of 32 (YOLOv5's largest stride)."""
    for size in sizes:
        if size < 32 or size % 32:
            raise UsageError(f"{flag} {size}: must be a positive multiple of 32 (the network's largest stride)")


def check_range(flag: str, value: float, low: float, high: float | None = None, low_open: bool = False) -> None:
    """``low <= value <= high`` (``low < value`` when ``low_open``); one line and exit 2 otherwise."""
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        span = f"{'(' if low_open else '['}{low:g}, {high:g}]" if high is not None else f"{'>' if low_open else '>='} {low:g}"
        raise UsageError(f"{flag} {value:g}: must be {'in ' if high is not None else ''}{span}")
