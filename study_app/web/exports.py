"""What the organiser sees and downloads, computed once for the page and the download route alike.

The organiser's files hold the truth, so they are never Streamlit's ``/media/`` files (which any
browser that learns the address can fetch, with no session): ``study_app.web.routes`` serves them at
``/organiser-download/<name>`` to a live organiser session only, built here from the answers as
they are at that moment, with the options the organiser's page had chosen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from study_app.preparation.prepared import PreparedStudy
from study_app.statistics.mrmc_answers import (
    RATINGS_COLUMNS,
    ratings_rows,
    select_arm_designs,
)
from study_app.statistics.scoring import LABELS, Answer, score
from study_app.store.database import AnswerStore, StoredAnswer
from study_app.web.tables import (
    RESULT_COLUMNS,
    as_answers,
    finished_readers,
    progress_rows,
    result_rows,
    to_csv,
)

DOWNLOAD_ROUTE = "/organiser-download"
# name -> (button label, media type); results need a reader who has finished
DOWNLOADS = {"answers.csv": ("Raw answers (CSV)", "text/csv"), "results.csv": ("Results table (CSV)", "text/csv"),
             "results.json": ("Results (JSON)", "application/json"),
             "mrmc-ratings.csv": ("MRMC ratings (CSV)", "text/csv")}


@dataclass(frozen=True)
class StudyResults:
    stored: list[StoredAnswer]
    progress: list[dict]
    finished: set[str]
    every: list[Answer]        # every answer given so far
    answers: list[Answer]      # the finished readers' answers: what Table 1 counts
    result: dict | None        # Table 1 per arm over the finished readers (None: nobody has finished)
    rows: list[dict]           # its flat rows (screen and CSV)

    @property
    def partial(self) -> list[Answer]:
        return [a for a in self.every if a.reader not in self.finished]


def study_results(prepared: PreparedStudy, store: AnswerStore, positive: str = "synthetic") -> StudyResults:
    stored = store.all_answers()
    assigned = {reader: prepared.reader_cases(reader) for reader in prepared.study.readers}
    progress = progress_rows(assigned, stored)
    finished = finished_readers(progress)
    every = as_answers(stored)
    answers = [a for a in every if a.reader in finished]
    result = score(answers, by="arm", positive=positive) if answers else None
    return StudyResults(stored, progress, finished, every, answers, result, result_rows(result) if result else [])


def mrmc_answers(results: StudyResults, finished_only: bool) -> list[Answer]:
    """The answers the MRMC section analyses: every answer, or the finished readers' only."""
    return results.answers if finished_only else results.every


def download_url(name: str, token: str, positive: str = "synthetic", finished_only: bool = False) -> str:
    return f"{DOWNLOAD_ROUTE}/{name}?session={token}&positive={positive}&finished={int(finished_only)}"


def download(name: str, prepared: PreparedStudy, store: AnswerStore, positive: str = "synthetic",
             finished_only: bool = False) -> tuple[bytes, str, str] | None:
    """(content, media type, file name) of one organiser download, or None when there is no such
    file now (an unknown name, an unknown positive class, or results before any reader finished)."""
    if name not in DOWNLOADS or positive not in LABELS:
        return None
    stem, extension = name.rsplit(".", 1)
    filename = f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M')}.{extension}"
    media_type = DOWNLOADS[name][1]
    if name == "answers.csv":
        return store.csv_text().encode(), media_type, filename
    results = study_results(prepared, store, positive)
    if name == "mrmc-ratings.csv":
        rows = ratings_rows(select_arm_designs(mrmc_answers(results, finished_only)))
        return (to_csv(rows, RATINGS_COLUMNS).encode(), media_type, filename) if rows else None
    if results.result is None:
        return None
    if name == "results.csv":
        return to_csv(results.rows, RESULT_COLUMNS).encode(), media_type, filename
    return json.dumps(results.result, indent=2).encode(), media_type, filename
