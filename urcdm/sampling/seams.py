"""The seam score: how much stronger the image changes across the stitching lines than elsewhere.

A patch meets its finished neighbours where its kept strips end: on the two edges of every strip two
neighbouring patches share, ``k * stride`` and ``k * stride + overlap`` for ``k = 1 .. grid - 1``
(which edge a seam lands on depends on which of the two patches was made first). The score is the mean absolute luminance step across those lines divided by
the mean step across every other column or row (vertical lines with horizontal steps, horizontal lines
with vertical steps). 1.0: the seams are invisible to this measure; 2.0: the image changes twice as
much across a seam as anywhere else.

Written here rather than taken from a library because it is defined by our stitching geometry. The
tally is fed in bands of rows (``urcdm seams`` streams a pyramid), so a 41344^2 slide is scored
without holding it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from urcdm.sampling.geometry import LevelGrid

# ITU-R BT.601 luma: the seams people see are in brightness more than in hue.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def seam_lines(grid: LevelGrid) -> np.ndarray:
    """Pixel indices ``i`` such that the step between pixels ``i - 1`` and ``i`` crosses a seam."""
    overlap = grid.patch - grid.stride
    shared = np.arange(1, grid.grid) * grid.stride  # where patch k's strip shared with patch k - 1 begins
    return np.unique(np.concatenate([shared, shared + overlap]))


@dataclass
class SeamTally:
    """Sums of absolute luminance steps on seams and off them, fed band by band."""

    lines: np.ndarray
    seam_sum: float = 0.0
    seam_count: int = 0
    other_sum: float = 0.0
    other_count: int = 0

    def add(self, band: np.ndarray, top: int, above: np.ndarray | None) -> np.ndarray:
        """Count the steps inside ``band`` (rows ``top..``) and from the row ``above`` it; returns the
        band's last luma row, to pass as ``above`` with the next band."""
        luma = band[..., :3].astype(np.float32) @ LUMA
        across_columns = np.abs(np.diff(luma, axis=1))          # step i-1 -> i sits at column index i - 1
        on_columns = np.zeros(luma.shape[1] - 1, bool)
        on_columns[self.lines - 1] = True  # bands span the full width
        self._count(across_columns[:, on_columns], across_columns[:, ~on_columns])
        rows = luma if above is None else np.vstack([above, luma])
        first = top if above is None else top - 1               # image row of rows[0]
        across_rows = np.abs(np.diff(rows, axis=0))             # step to image row first + j + 1
        on_rows = np.isin(np.arange(first + 1, first + len(rows)), self.lines)
        self._count(across_rows[on_rows], across_rows[~on_rows])
        return luma[-1:]

    def _count(self, on_seams: np.ndarray, elsewhere: np.ndarray) -> None:
        self.seam_sum += float(on_seams.sum())
        self.seam_count += on_seams.size
        self.other_sum += float(elsewhere.sum())
        self.other_count += elsewhere.size

    @property
    def score(self) -> float:
        if not self.seam_count or not self.other_count or self.other_sum == 0:
            return float("nan")
        return (self.seam_sum / self.seam_count) / (self.other_sum / self.other_count)

    def as_dict(self) -> dict:
        return {"seam_score": round(self.score, 4),
                "mean_step_on_seams": round(self.seam_sum / max(self.seam_count, 1), 4),
                "mean_step_elsewhere": round(self.other_sum / max(self.other_count, 1), 4),
                "seam_lines_per_axis": int(len(self.lines))}


def seam_score(image: np.ndarray, grid: LevelGrid) -> float:
    """The score of a stitched image held in memory (small levels, tests)."""
    if image.shape[:2] != (grid.size, grid.size):
        raise ValueError(f"image is {image.shape[1]}x{image.shape[0]}, the grid stitches {grid.size}x{grid.size}")
    tally = SeamTally(seam_lines(grid))
    tally.add(image, 0, None)
    return tally.score
