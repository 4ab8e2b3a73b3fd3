"""Cases and who sees which, in what order (pure: no I/O).

A case is one image shown to readers, known to the server by its arm, truth and source, and to the
browser only by an opaque id. Every reader gets a deterministic shuffle of a balanced list: the same
reader id always gets the same cases in the same order, so a resumed session continues where it
stopped, and two readers get different orders (no order effects shared across readers).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from study_app.statistics.records import (
    LABELS as TRUTHS,  # one list of answers/truths for the whole app
)
from urcdm.errors import UserError


@dataclass(frozen=True)
class Case:
    id: str
    arm: str
    truth: str
    source: str
    crop: tuple[float, ...] | None   # (x, y, size[, frame x, y, w, h]) in level-0 px of the source; None: the whole image
    image_id: str = ""                  # sha256 prefix of the bytes served, filled in when rendered
    content_id: str = ""                # sha256 prefix of the decoded pixels shown: equal content, equal id
    whole_slide: bool = False           # a whole slide, read in the deep-zoom viewer (crop then None)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "Case":
        crop = values.get("crop")
        return cls(**{**values, "crop": tuple(crop) if crop is not None else None})


def _rng(*seeds: int | str) -> np.random.Generator:
    words = [s if isinstance(s, int) else int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "little")
             for s in seeds]
    return np.random.default_rng(words)


def balance_pool(cases: Sequence[Case], seed: int) -> tuple[list[Case], dict[str, int]]:
    """Per arm, as many real as synthetic cases: the larger side is subsampled (seeded).

    Returns the kept cases and, per arm, how many were left out.
    """
    kept, dropped = [], {}
    for arm in dict.fromkeys(case.arm for case in cases):
        sides = {truth: [c for c in cases if c.arm == arm and c.truth == truth] for truth in TRUTHS}
        k = min(len(side) for side in sides.values())
        dropped[arm] = sum(len(side) for side in sides.values()) - 2 * k
        for truth, side in sides.items():
            chosen = np.sort(_rng(seed, arm, truth).choice(len(side), k, replace=False)) if len(side) > k else range(k)
            kept.extend(side[i] for i in chosen)
    return kept, dropped


def check_assignable(cases: Sequence[Case], cases_per_reader: int | None, balance: str) -> None:
    """Fail before the study starts, not when the first reader logs in."""
    for arm in dict.fromkeys(case.arm for case in cases):
        counts = {truth: sum(1 for c in cases if c.arm == arm and c.truth == truth) for truth in TRUTHS}
        if not all(counts.values()):
            raise UserError(f"arm {arm!r}: needs both real and synthetic cases, has {counts}")
        if cases_per_reader is None:
            continue
        if balance == "equal" and cases_per_reader // 2 > min(counts.values()):
            raise UserError(f"cases_per_reader: {cases_per_reader} needs {cases_per_reader // 2} real and "
                            f"{cases_per_reader // 2} synthetic cases in arm {arm!r}, which has {counts}")
        if balance == "none" and cases_per_reader > sum(counts.values()):
            raise UserError(f"cases_per_reader: {cases_per_reader} exceeds the {sum(counts.values())} cases of arm {arm!r}")


def repeated_content(cases: Sequence[Case]) -> dict[str, list[Case]]:
    """Content shown by more than one case (content id -> those cases). A reader who saw an image
    before knows more than its tissue tells: if only real images repeat, "seen before" means real."""
    groups: dict[str, list[Case]] = {}
    for case in cases:
        if case.content_id:
            groups.setdefault(case.content_id, []).append(case)
    return {content: group for content, group in groups.items() if len(group) > 1}


def check_no_repeats(cases: Sequence[Case], split: bool) -> None:
    """Refuse a study in which one reader could be shown the same image twice.

    The same content twice within one arm is always refused; across arms only without ``split``
    (then each reader sees it in one arm only, see ``assign_cases``).
    """
    for group in repeated_content(cases).values():
        arms = [case.arm for case in group]
        sources = ", ".join(sorted({case.source for case in group}))
        if len(set(arms)) < len(arms):
            raise UserError(f"arm {arms[0]!r} shows the same image content more than once ({sources}); remove the duplicates")
        if not split:
            raise UserError(f"arms {', '.join(repr(a) for a in arms)} share an image ({sources}), so a reader would see it "
                            f"twice and recognise it as {group[0].truth}; give each arm its own images, or set "
                            f"`shared_images: split` to show each shared image to each reader in one arm only")


def case_blocks(cases: Sequence[Case], groups: int, seed: int) -> dict[str, int]:
    """Case id -> block (0 .. groups-1) for a split-plot design: per arm and truth a seeded shuffle dealt
    round-robin, so every block holds the same number of real and of synthetic cases (give or take one)."""
    blocks: dict[str, int] = {}
    for arm in dict.fromkeys(case.arm for case in cases):
        for truth in TRUTHS:
            side = [c for c in cases if c.arm == arm and c.truth == truth]
            for position, index in enumerate(_rng(seed, "blocks", arm, truth).permutation(len(side))):
                blocks[side[index].id] = position % groups
    return blocks


def assign_cases(cases: Sequence[Case], reader: str, seed: int, cases_per_reader: int | None = None,
                 balance: str = "equal", shared_cases: bool = True, split_shared: bool = False,
                 block: tuple[int, int] | None = None) -> list[Case]:
    """The reader's cases in the order they are shown.

    ``cases_per_reader`` is per arm (None: all). With ``shared_cases`` the subset is the same for
    every reader (so agreement can be measured on it) and only the order is the reader's own.
    ``block`` = (the reader's group, groups) restricts each arm to that group's block of cases
    (``case_blocks``): a split-plot design, crossed within each group.
    With ``split_shared``, content that several arms share is shown to this reader in one of them
    (chosen per reader and image, so across readers every arm gets it); for each case left out, a
    case of the other truth in that arm goes too when the arm is balanced.
    """
    chosen: list[Case] = []
    subset_rng_seed = (seed,) if shared_cases else (seed, reader)
    if block is not None:
        blocks = case_blocks(cases, block[1], seed)
        cases = [c for c in cases if blocks[c.id] == block[0]]
    for arm in dict.fromkeys(case.arm for case in cases):
        in_arm = [c for c in cases if c.arm == arm]
        if cases_per_reader is None or cases_per_reader >= len(in_arm):
            chosen.extend(in_arm)
        elif balance == "equal":
            for truth in TRUTHS:
                side = [c for c in in_arm if c.truth == truth]
                picks = _rng(*subset_rng_seed, arm, truth).choice(len(side), cases_per_reader // 2, replace=False)
                chosen.extend(side[i] for i in np.sort(picks))
        else:
            picks = _rng(*subset_rng_seed, arm).choice(len(in_arm), cases_per_reader, replace=False)
            chosen.extend(in_arm[i] for i in np.sort(picks))
    if split_shared:
        chosen = _one_sight_each(chosen, reader, seed, balance)
    order = _rng(seed, "order", reader).permutation(len(chosen))
    return [chosen[i] for i in order]


def _one_sight_each(chosen: list[Case], reader: str, seed: int, balance: str) -> list[Case]:
    repeats = repeated_content(chosen)
    dropped: set[str] = set()
    for content, group in sorted(repeats.items()):
        keep = group[int(_rng(seed, "shared", reader, content).integers(len(group)))]
        for case in group:
            if case is keep:
                continue
            dropped.add(case.id)
            if balance == "equal":  # the arm loses one case of each truth, so it stays balanced
                others = [c for c in chosen if c.arm == case.arm and c.truth != case.truth
                          and c.id not in dropped and c.content_id not in repeats]
                if others:
                    dropped.add(others[int(_rng(seed, "rebalance", reader, case.id).integers(len(others)))].id)
    return [case for case in chosen if case.id not in dropped]
