"""A throwaway PostgreSQL server for tests: initdb + pg_ctl on a temporary folder and a free local port.

Finds the binaries on PATH or in Debian's /usr/lib/postgresql/N/bin (the ``postgresql`` package, which
.ci/run installs when it is missing). PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user the package creates. Skips the test, saying why, where none of this is possible.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    debian = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return debian[-1] if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres():
    """Yields a postgresql:// URL to a fresh server's ``postgres`` database; stops and deletes it after."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("needs PostgreSQL's initdb and pg_ctl (Debian: apt-get install postgresql; .ci/run does it)")
    pytest.importorskip("psycopg", reason="needs psycopg (requirements.txt): SQLAlchemy's postgresql:// driver")
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="detect-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # initdb refuses root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(folder)
            pytest.skip("running as root and there is no postgres user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    try:
        init = subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                              capture_output=True, text=True, timeout=120)
        if init.returncode != 0:
            pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
        start = subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(folder / "log"), "-w", "-t", "60", "-o",
                                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"],
                               capture_output=True, text=True, timeout=120)
        if start.returncode != 0:
            pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-300:]}")
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True, timeout=120)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
