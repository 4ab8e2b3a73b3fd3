"""ANSWERS.csv -> validated ``Answer`` rows; any bad row is one error naming the row.

Cells our exports neutralised for spreadsheets (``study_app.store.spreadsheet``) are read back as typed."""

from __future__ import annotations

import csv
from pathlib import Path

from study_app.statistics.records import LABELS, Answer
from study_app.store.spreadsheet import restore
from urcdm.errors import UserError

REQUIRED = ("reader", "case", "arm", "truth", "answer")


def read_answers(path: str | Path) -> list[Answer]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a CSV file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return _read(path)
    except (UnicodeDecodeError, csv.Error) as exc:  # binary junk, NUL bytes: not a text CSV at all
        raise UserError(f"{path}: not a UTF-8 CSV text file ({str(exc).splitlines()[0]})") from None


def _read(path: Path) -> list[Answer]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise UserError(f"{path}: empty file (need a header line: {','.join(REQUIRED)})")
        missing = [column for column in REQUIRED if column not in reader.fieldnames]
        if missing:
            raise UserError(f"{path}: missing column(s) {', '.join(missing)} (need {','.join(REQUIRED)})")
        answers, seen = [], {}
        for row_number, row in enumerate(reader, start=2):
            answer = _parse_row(row, f"{path}:{row_number}")
            key = (answer.reader, answer.case)
            if key in seen:
                raise UserError(f"{path}:{row_number}: reader {answer.reader!r} answered case {answer.case!r} "
                                f"twice (first on row {seen[key]})")
            seen[key] = row_number
            answers.append(answer)
    if not answers:
        raise UserError(f"{path}: no answers")
    return answers


def _parse_row(row: dict, where: str) -> Answer:
    values = {column: restore((row.get(column) or "").strip()) for column in REQUIRED}
    for column in REQUIRED:
        if not values[column]:
            raise UserError(f"{where}: empty {column}")
    for column in ("truth", "answer"):
        values[column] = values[column].lower()
        if values[column] not in LABELS:
            raise UserError(f"{where}: {column} {row[column]!r} is not one of {', '.join(LABELS)}")
    confidence = (row.get("confidence") or "").strip()
    if confidence:
        if not confidence.isdigit() or not 1 <= int(confidence) <= 5:
            raise UserError(f"{where}: confidence {confidence!r} is not an integer from 1 to 5")
    return Answer(**values, confidence=int(confidence) if confidence else None)
