"""A run folder's files, and which folders a run may write into.

A run folder holds ``checkpoint.pt`` (written atomically), ``config.yaml`` and ``log.csv``. ``train``
writes into a folder that is new, empty, a run to resume (it has a checkpoint), or what an earlier try
left before its first checkpoint (nothing but this run's ``config.yaml`` and a ``log.csv`` of ours). A
folder holding anything else is the user's, and is refused before anything is written. A try that ends
before its first checkpoint (Ctrl-C, an error) takes back the files it wrote, and the folder if it made it.
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path

from urcdm.errors import OutputExistsError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
LOG = "log.csv"
LOG_COLUMNS = ("step", "loss", "lr", "grad_norm", "val_loss", "seconds")
_PARTIAL_CHECKPOINT = f".{CHECKPOINT}.partial"


def check_run_folder(out: Path, what: str) -> None:
    if out.exists() and not out.is_dir():  # a user's file, never replaced by a folder of ours
        raise OutputExistsError(f"{out}: exists and is not a folder; --out names {what}")


def check_fresh_run_folder(out: Path, config_text: str) -> None:
    """A run starting from step 0 writes here only if nothing in the folder is someone else's."""
    if not out.exists():
        return
    for entry in sorted(out.iterdir()):
        if entry.name == _PARTIAL_CHECKPOINT:  # a save cut short by SIGKILL: ours, and worthless
            continue
        if entry.name == CONFIG and entry.is_file() and entry.read_text(errors="replace") == config_text:
            continue
        if entry.name == LOG and entry.is_file() and _is_our_log(entry):
            continue
        raise OutputExistsError(f"{out}: holds {entry.name} and no {CHECKPOINT}, so it is not a run to resume; "
                                "choose a new or empty --out (nothing was written)")


def _is_our_log(path: Path) -> bool:
    with open(path, newline="", errors="replace") as handle:
        return next(csv.reader(handle), None) == list(LOG_COLUMNS)


@contextlib.contextmanager
def taken_back_unless_checkpointed(out: Path):
    """Whatever ends the block before a checkpoint exists removes the run's files (and the folder, if
    this try made it): an interrupted first try leaves nothing a later one could mistake for a run."""
    made_folder = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if not (out / CHECKPOINT).exists():
            for name in (CONFIG, LOG, _PARTIAL_CHECKPOINT):
                (out / name).unlink(missing_ok=True)
            if made_folder:
                with contextlib.suppress(OSError):  # not empty: something else wrote there meanwhile
                    out.rmdir()
        raise


def save_checkpoint(path: Path, payload: dict) -> None:
    """Written beside the target, flushed to disk, then renamed: a crash never leaves half a checkpoint."""
    import torch  # here: the command line imports this module to check folders, before torch is needed

    temp = path.with_name(f".{path.name}.partial")
    try:
        with open(temp, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def keep_log_until(path: Path, step: int) -> None:
    """The log from step 0 to ``step``: later steps are replayed on resume (and a fresh start keeps none)."""
    rows = []
    if path.exists():
        with open(path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if int(row["step"]) <= step]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
