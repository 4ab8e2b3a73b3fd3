"""What a study's reading design allows, checked when it is prepared (pure: reads the assignment only).

Each design has its analysable units, the sets of readers and cases an MRMC analysis estimates its
variance from: an arm (crossed), a group's block of an arm (split-plot), the arm across readers' own
subsets (random). A unit with fewer than 2 readers, or fewer than 2 cases of a class, has no
random-reader variance or no case variance; such a design is refused before anyone reads, not found
out when the results are in.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

from study_app.preparation.cases import TRUTHS, Case
from urcdm.errors import UserError

MIN_READERS = 2
MIN_PER_CLASS = 2
ANALYSES = {
    "crossed": "Obuchowski-Rockette (Hillis ddf), and the U-statistics of Gallas beside it",
    "split-plot": "U-statistics of Gallas, and the split-plot Obuchowski-Rockette analysis beside it",
    "random": "U-statistics of Gallas (any pattern of reads)",
}


def design_report(design: str, groups: int | None, arms: Sequence[str], readers: Sequence[str],
                  assigned: dict[str, list[Case]], split_shared: bool = False) -> dict:
    """The design's readers, groups, cases per reader and arm, and the MRMC analyses that apply.

    ``readers`` are the listed reader ids (empty with open enrolment); ``assigned`` maps each of them
    (or one stand-in reader with open enrolment) to their cases. Raises UserError naming the first
    analysable unit that is too small. With ``split_shared`` (images the arms share shown to each reader in
    one arm) no arm is crossed whatever the design: the unit is the arm across its readers, as in a
    random design.
    """
    report = {}
    if design == "split-plot":
        members = {g: [r for i, r in enumerate(readers) if i % groups == g] for g in range(groups)}
        small = next((g for g, who in members.items() if len(who) < MIN_READERS), None)
        if small is not None:
            raise UserError(f"design: split-plot with groups: {groups} leaves group {small + 1} with "
                            f"{len(members[small])} reader(s) of the {len(readers)} listed; each group needs "
                            f"{MIN_READERS} or more for its reader variance")
        report["groups"] = {f"group {g + 1}": ", ".join(who) for g, who in members.items()}
    elif readers and len(readers) < MIN_READERS:
        raise UserError(f"design: {design} with {len(readers)} listed reader: the random-reader MRMC analysis "
                        f"needs {MIN_READERS} or more")
    elif not readers:
        report["note"] = f"open enrolment: the random-reader analysis needs {MIN_READERS} or more readers"
    per_reader = {reader: {arm: Counter(c.truth for c in cases if c.arm == arm) for arm in arms}
                  for reader, cases in assigned.items()}
    if split_shared:
        _check_arms_across_readers(per_reader, arms, bool(readers))
    else:
        _check_each_reader(per_reader, design, bool(readers))
    return {"design": design if design != "split-plot" else f"split-plot, {groups} groups",
            "readers": len(readers) if readers else "open enrolment",
            "cases_per_reader": _cases_per_reader(per_reader, arms),
            "mrmc": ANALYSES["random"] + ": shared images are split between the arms" if split_shared else ANALYSES[design],
            **report}


def _check_each_reader(per_reader: dict[str, dict[str, Counter]], design: str, listed: bool) -> None:
    """Crossed and split-plot: a reader's cases are the unit's cases, which need a case variance. Random:
    the unit is the arm across readers; each reader needs only an AUC of their own."""
    least = MIN_PER_CLASS if design != "random" else 1
    for reader, counts in per_reader.items():
        for arm, count in counts.items():
            if any(count[t] < least for t in TRUTHS):
                who = f"reader {reader!r}" if listed else "each reader"
                why = (f"an ROC AUC's case variance needs at least {MIN_PER_CLASS} of each (more cases per arm, or "
                       "fewer groups)" if least > 1 else "a reader's ROC AUC needs at least one of each")
                raise UserError(f"design: {design}: {who} gets {count['real']} real and {count['synthetic']} "
                                f"synthetic cases of arm {arm!r}; {why}")


def _check_arms_across_readers(per_reader: dict[str, dict[str, Counter]], arms: Sequence[str], listed: bool) -> None:
    """Shared images split: each arm needs 2 readers with an AUC of their own in it (listed readers only)."""
    if not listed:
        return
    for arm in arms:
        able = [r for r, counts in per_reader.items() if all(counts[arm][t] >= 1 for t in TRUTHS)]
        if len(able) < MIN_READERS:
            raise UserError(f"shared_images: split leaves {len(able)} reader(s) with both real and synthetic cases "
                            f"of arm {arm!r}; the random-reader analysis needs {MIN_READERS} or more (more readers, "
                            "more cases, or give each arm its own images)")


def _cases_per_reader(per_reader: dict[str, dict[str, Counter]], arms: Sequence[str]) -> str:
    """'ARM: 4 real + 4 synthetic' per arm, as a range where readers differ."""
    parts = []
    for arm in arms:
        real = sorted({counts[arm]["real"] for counts in per_reader.values()})
        synthetic = sorted({counts[arm]["synthetic"] for counts in per_reader.values()})
        parts.append(f"{arm}: {_span(real)} real + {_span(synthetic)} synthetic")
    return "; ".join(parts)


def _span(values: list[int]) -> str:
    return str(values[0]) if len(values) == 1 else f"{values[0]}-{values[-1]}"
