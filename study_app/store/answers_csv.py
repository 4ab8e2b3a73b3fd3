"""ANSWERS.csv -> validated ``Answer`` rows; any bad row is one error naming the row.

Cells our exports neutralised for spreadsheets (``study_app.store.spreadsheet``) are read back as typed."""

from __future__ import annotations

from pathlib import Path

from study_app.statistics.records import LABELS, Answer
from study_app.store.csv_files import csv_dict_reader
from study_app.store.spreadsheet import restore
from urcdm.errors import UserError

REQUIRED = ("reader", "case", "arm", "truth", "answer")


def read_answers(path: str | Path) -> list[Answer]:
    path = Path(path)
    with csv_dict_reader(path) as reader:
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
