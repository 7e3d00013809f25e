"""``python -m MODULE ARGS`` in this process: the exit status and the output a subprocess would give.

For the many bad-input cases (one line, exit 2): each subprocess paid ~5-10 s of interpreter and torch
start-up for a check that takes milliseconds. Each CLI keeps end-to-end subprocess tests elsewhere, so a
traceback printed by the real entry point is still caught there; here an escaping exception fails the test.
Warnings are printed to the captured stderr (as a fresh process would show them), not recorded by pytest.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import warnings
from dataclasses import dataclass

from detect import cli


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_cli(module: str, *argv: str) -> Result:
    mod = importlib.import_module(module)
    main = getattr(mod, "main", None) or importlib.import_module(f"{module}.__main__").main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, cat, filename, lineno, file=None, line=None: err.write(
            warnings.formatwarning(msg, cat, filename, lineno, line))
        try:
            cli.run(main, [str(a) for a in argv])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return Result(code, out.getvalue(), err.getvalue())
