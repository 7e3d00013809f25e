"""What keeps a run safe from its surroundings: a lock on its output folder and signal handling.

``RunLock``: two trainings into one ``--out`` would interleave results.csv rows and replace each
other's best.pt. The lock is an ``flock`` on ``OUT/.lock`` holding the owner's PID: the kernel
releases it when the owner dies, so a stale file is taken over with a warning.

``SignalStop``: SIGINT/SIGTERM set a flag; the loop saves last.pt at the next optimiser step and
``fit`` reports the signal, so the CLI exits 130/143 and a scheduler sees the interruption. The
previous handlers come back when the context exits. Data-loading workers ignore both signals
(``detect.data.dataset.init_worker``, training and validation loaders alike), so a signal sent to the whole process group (``kill -- -PGID``,
``scancel``, systemd) leaves them alive for the main process to save and shut them down.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
from pathlib import Path

from detect.errors import UsageError
from detect.outputs import ensure_writable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunLock:
    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        ensure_writable(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UsageError(
                f"{self.path.parent} is in use by another training (PID {holder}); wait for it, or choose another --out"
            ) from None
        previous = os.read(fd, 32).decode(errors="replace").strip()
        if previous:
            print(f"warning: taking over the stale lock of process {previous} on {self.path.parent}", file=sys.stderr)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)  # an empty lock file is not stale; the next run takes it silently
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class SignalStop:
    """Context manager: ``.signal`` is the first SIGINT/SIGTERM received (None until then)."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> SignalStop:
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal: leave now
            raise KeyboardInterrupt
        self.signal = signum
        print(
            f"\n{signal.Signals(signum).name}: saving at the next optimiser step, then stopping "
            "(send it again to abort without saving)",
            file=sys.stderr,
        )
