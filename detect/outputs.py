"""Writing results safely: atomic replacement, the process umask, and one clear line on failure.

Every file a stage writes that another stage reads (checkpoints, exports, JSON) goes through
``atomic_write_bytes``: a temp file in the same folder, fsync, ``os.replace``. A full or
read-only disk raises ``OutputError`` naming the path and the cause (``No space left on
device``) and leaves the previous file intact. ``ensure_writable`` checks a folder before long
work starts, so an hour of training is not lost to a typo in ``--out``.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

from detect.errors import OutputError


def umask() -> int:
    """The process umask (set back at once: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _describe(e: OSError) -> str:
    return e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and prove a file can be written in it; OutputError otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{folder}: cannot write there ({_describe(e)}); choose another output folder") from None
    return folder


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` to ``path`` atomically with mode 0666 & ~umask (0644 typically)."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"{path}: cannot write ({_describe(e)}); the previous file, if any, is unchanged") from None
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(text: str, path: str | os.PathLike) -> Path:
    return atomic_write_bytes(text.encode("utf-8"), path)


def write_json(obj, path: str | os.PathLike) -> Path:
    return atomic_write_text(json.dumps(obj, indent=2), path)
