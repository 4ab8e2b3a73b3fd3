"""Opening a CSV file that a user named, with their likely mistakes reported as one ``UserError``."""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path

from urcdm.errors import UserError


@contextmanager
def csv_dict_reader(path: Path):
    """A ``csv.DictReader`` over ``path``: a folder, a missing file or binary junk become one error line."""
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a CSV file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            yield csv.DictReader(handle)
    except (UnicodeDecodeError, csv.Error) as exc:  # binary junk, NUL bytes: not a text CSV at all
        raise UserError(f"{path}: not a UTF-8 CSV text file ({str(exc).splitlines()[0]})") from None
