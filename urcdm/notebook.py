"""What the reproduction notebooks share: where the data is, and the toolkit's error contract in a cell.

A notebook's first cells check its inputs; a missing folder or a bad file stops it there with the
same one-line ``error:`` message the command line prints, instead of a traceback minutes later.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

from urcdm.errors import UserError

DATA_ENV = "URCDM_TEST_DATA"
REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data(explicit: str | os.PathLike | None = None, need: str = "") -> Path:
    """The real-data folder: ``explicit``, else ``$URCDM_TEST_DATA``, else ``../shared/data`` beside the
    repository. ``need``: a sub-path that must exist there (e.g. ``paper/table1.csv``)."""
    folder = Path(explicit or os.environ.get(DATA_ENV) or REPO_ROOT.parent / "shared" / "data").expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"{folder}: no such data folder (pass data_dir=..., or set {DATA_ENV})")
    if need and not (folder / need).exists():
        raise UserError(f"{folder / need}: not found in the data folder")
    return folder


@contextmanager
def user_errors():
    """Inside a cell: a ``UserError`` becomes one ``error:`` line and stops the notebook (the cell fails)."""
    try:
        yield
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
