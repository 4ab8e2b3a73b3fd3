"""Inter-reader agreement as Krippendorff's alpha for nominal answers (pure: no I/O).

Units are cases (an arm's case: the same id in two arms is two units), coders are readers, values
are the answers. Unlike Fleiss' kappa, alpha needs no complete design: readers may see different
cases and may not have finished. Cases answered by fewer than two readers carry no pairable value
and are dropped. With n pairable values, o the coincidence matrix and n_c its marginals:

    alpha = 1 - D_o / D_e,  D_o = sum_{c != k} o_ck / n,  D_e = sum_{c != k} n_c n_k / (n (n - 1))

(Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"). Alpha is None when undefined:
fewer than two pairable values, or D_e = 0 (every pairable value the same, so no disagreement is
possible).

The coincidence matrix is written out here rather than taken from PyPI's ``krippendorff`` package
(0.9.0 installs fine) because that package is GPL-3.0-or-later, which this MIT-licensed project
should not pull in as a runtime dependency; it also raises or returns NaN in the undefined cases.
The nominal computation is a dozen lines, checked in the tests against Krippendorff's published
example and a brute-force pairwise count.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np

from study_app.statistics.records import Answer


@dataclass(frozen=True)
class Agreement:
    alpha: float | None
    n_units: int      # cases with at least two answers
    n_pairable: int   # answers in those cases


def krippendorff_alpha(answers: Iterable[Answer]) -> Agreement:
    """Nominal alpha over the answers given: units = (arm, case), coders = readers.

    A reader's repeated answer to one case counts once (the last one), as in ``shared_case_kappa``.
    Any answer strings work, not only "real"/"synthetic".
    """
    by_unit: dict[tuple[str, str], dict[str, Hashable]] = defaultdict(dict)
    for a in answers:
        by_unit[(a.arm, a.case)][a.reader] = a.answer
    return alpha_from_units(list(calls.values()) for calls in by_unit.values())


def alpha_per_arm(answers: Iterable[Answer]) -> dict[str, Agreement]:
    """``{arm: krippendorff_alpha(that arm's answers)}``, arms sorted."""
    by_arm: dict[str, list] = defaultdict(list)
    for a in answers:
        by_arm[a.arm].append(a)
    return {arm: krippendorff_alpha(by_arm[arm]) for arm in sorted(by_arm)}


def alpha_from_table(table: Sequence[Sequence[Hashable | None]]) -> Agreement:
    """Nominal alpha from a units x coders table; None marks a missing value."""
    return alpha_from_units([value for value in row if value is not None] for row in table)


def alpha_from_units(units: Iterable[Sequence[Hashable]]) -> Agreement:
    """Nominal alpha from the values each unit received (one list per unit, any length)."""
    pairable = [list(values) for values in units if len(values) >= 2]
    n = sum(len(values) for values in pairable)
    if n < 2:
        return Agreement(None, len(pairable), n)
    domain = {value: i for i, value in enumerate(dict.fromkeys(v for values in pairable for v in values))}
    counts = np.zeros((len(pairable), len(domain)))  # n_uc: how often unit u got value c
    for u, values in enumerate(pairable):
        for value in values:
            counts[u, domain[value]] += 1
    m = counts.sum(axis=1)
    # o_ck = sum_u n_uc (n_uk - [c == k]) / (m_u - 1): ordered pairs of values within a unit.
    coincidences = np.einsum("uc,uk,u->ck", counts, counts, 1 / (m - 1)) - np.diag((counts.T / (m - 1)).sum(axis=1))
    marginals = coincidences.sum(axis=0)
    off_diagonal = ~np.eye(len(domain), dtype=bool)
    observed = coincidences[off_diagonal].sum() / n
    expected = np.outer(marginals, marginals)[off_diagonal].sum() / (n * (n - 1))
    if expected <= 0:
        return Agreement(None, len(pairable), n)
    return Agreement(float(1 - observed / expected), len(pairable), n)
