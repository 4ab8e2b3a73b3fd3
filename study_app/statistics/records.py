"""The records every statistic reads (pure): one reader's answer to one case, and a ratings design.

Kept apart from the statistics so that scoring, agreement and MRMC all import from here and never
from each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LABELS = ("real", "synthetic")
POSITIVE = "synthetic"  # the positive class of every ROC analysis here


@dataclass(frozen=True)
class Answer:
    reader: str
    case: str
    arm: str
    truth: str
    answer: str
    confidence: int | None = None


@dataclass(frozen=True)
class Design:
    """Ratings as [reader, arm, case], NaN where a reader did not rate a case in an arm."""

    ratings: np.ndarray  # [reader, arm, case]
    truth: np.ndarray  # [case], True = positive (synthetic)
    readers: list[str]
    arms: list[str]
    cases: list[str]
    source: str  # "ratings", "export" or "answers"

    @property
    def read(self) -> np.ndarray:
        """[reader, arm, case]: True where a rating exists."""
        return np.isfinite(self.ratings)

    @property
    def crossed(self) -> bool:
        """Every reader rated every case in every arm."""
        return bool(self.read.all())


def answer_rating(answer: str, confidence: int | None) -> int:
    """One ordinal rating, higher = more sure the image is synthetic: real 5 -> 1 ... real 1 -> 5,
    synthetic 1 -> 6 ... synthetic 5 -> 10; without a confidence real 1, synthetic 2."""
    if confidence is None:
        return 1 if answer == "real" else 2
    return 6 - confidence if answer == "real" else 5 + confidence


def natural_key(name: str) -> tuple:
    """reader-2 before reader-10: digit runs compare as numbers."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))
