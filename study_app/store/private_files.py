"""Files that hold the truth, the answers or the sessions: readable by the study's owner alone (0600).

The case manifest names each case's truth and source, the parity report describes the classes, and
the SQLite files hold answers (with truth) and session hashes. On a shared server, another account
must not read them. New files are created 0600 (never 0644 first and narrowed later); files made by
an older version are narrowed when the study is opened. SQLite gives its -wal and -shm files the
main file's mode, and they are narrowed with it where they exist already.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from urcdm.errors import UserError

PRIVATE_MODE = 0o600
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def write_private(path: Path, data: bytes | str) -> None:
    """Write ``path`` whole (a temporary beside it, then renamed), created with mode 0600. A failure
    leaves no temporary behind (it holds the truth too) and is named by ``path``, not the temporary."""
    temp = path.with_name(f".{path.name}.partial")
    payload = data.encode() if isinstance(data, str) else data
    if path.is_dir():
        raise UserError(f"{path}: cannot be written (is a directory)")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(temp, PRIVATE_MODE)  # O_CREAT's mode applies to new files only
        os.replace(temp, path)
    except OSError as exc:
        raise UserError(f"{path}: cannot be written ({exc.strerror})") from None
    finally:
        temp.unlink(missing_ok=True)


def private_database(path: Path) -> Path:
    """Make sure an SQLite file (and its side files) exists with mode 0600 before it is connected to."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_MODE))
    narrow(path, *(path.with_name(path.name + suffix) for suffix in _SQLITE_SIDE_FILES))
    return path


def narrow(*paths: Path) -> None:
    """Mode 0600 for each of ``paths`` that exists and is wider (files of older versions)."""
    for path in paths:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(path, PRIVATE_MODE)
