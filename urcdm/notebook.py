"""What the reproduction notebooks share: where the data is, the toolkit's error contract in a cell,
and the command lines run in-process (the same code path as typing them).

A notebook's first cells check its inputs; a missing folder or a bad file stops it there with the
same one-line ``error:`` message the command line prints, instead of a traceback minutes later.
"""

from __future__ import annotations

import io
import json
import os
import sys
from contextlib import contextmanager, redirect_stdout
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


def cli(main, *args) -> dict | list | None:
    """Run a command line in this process exactly as typed (plus ``--json``) and return its JSON
    result; a failing command stops the notebook with its own one-line ``error:`` message."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main([*map(str, args), "--json"])
    if code:
        raise SystemExit(code)  # the command has printed its error line
    text = buffer.getvalue().strip()
    return json.loads(text) if text else None


def check_models_folder(models: Path, config) -> None:
    """A models folder trained with another config is refused before any work (not at sampling time)."""
    for saved in sorted(Path(models).glob("*/config.yaml")):
        from urcdm.config import load_config

        if load_config(saved) != config:
            raise UserError(f"{saved}: these models were trained with config {load_config(saved).name!r}, "
                            f"not the {config.name!r} asked for; use another build folder")
