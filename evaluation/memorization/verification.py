"""Second stage of the audit: was this crop copied from a training slide, and from where?

The feature search names candidates, a crop's k nearest training lattice cells. A copy, though, sits
anywhere: its source is up to half a lattice step from the nearest cell, and at such offsets no feature
space we can build offline separates it from look-alike tissue of the same slide (benchmarks/RESULTS.md:
the source was among the 5 nearest cells for 29 % of copies). Verification asks the question directly,
by normalised cross-correlation (scikit-image's ``match_template``: FFT correlation normalised per
window), under the 8 flips/turns, on grey levels:

1. coarse, exhaustive: the crop at ``COARSE_PX`` pixels per span against the whole thumbnail (same
   scale) of every training slide its candidates lie on: the best ``PEAKS`` positions;
2. fine: the crop at ``VERIFY_PX`` per span against the region around each peak (grown by two coarse
   pixels a side), both high-passed (less their Gaussian blur): the best correlation is the score.

The high-pass is what separates copies from look-alikes: on plain grey levels the tissue/glass
boundaries and stain gradients dominate, and unseen tissue reached 0.87 while copies fell to 0.77;
on the detail alone, held-out tissue stays below 0.31 and shifted, turned, JPEG-80 copies above 0.65
(benchmarks/RESULTS.md). Held-out crops
are scored the same way, and their scores calibrate the threshold. The feature search only chooses the
slides, which is easy (stain, tissue type); where training slides are many, k bounds the slides
searched per crop.
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict

import numpy as np
from scipy import ndimage
from skimage.feature import match_template
from tqdm import tqdm

from evaluation.memorization.crop_sets import CropSet
from evaluation.memorization.dihedral import TRANSFORMS, transform_array
from urcdm.slides import OpenSlides

COARSE_PX = 12   # per span: a 1/4-span shift is 3 coarse pixels, and tissue still has structure
VERIFY_PX = 48   # per span, for the fine score
PEAKS = 4        # coarse positions verified per crop
FLAT_STD = 2.0   # grey levels: a window flatter than this is glass, and correlates 0
DETAIL_SIGMA = VERIFY_PX / 24  # px: the fine stage correlates what a blur this wide removes


def grey(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32).mean(axis=2)


def detail(image: np.ndarray) -> np.ndarray:
    return image - ndimage.gaussian_filter(image, DETAIL_SIGMA)


def window_std(image: np.ndarray, size: int) -> np.ndarray:
    """Standard deviation of every ``size`` x ``size`` window (top-left indexed, as ``match_template``
    places them), from integral images."""
    def window_sums(values):
        total = np.pad(values.astype(np.float64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return total[size:, size:] - total[:-size, size:] - total[size:, :-size] + total[:-size, :-size]

    count = size * size
    mean = window_sums(image) / count
    return np.sqrt(np.maximum(window_sums(image * image.astype(np.float64)) / count - mean * mean, 0))


def correlation_map(image: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``match_template``'s normalised cross-correlation, set to 0 where either side is flat: over
    glass the normalisation divides by nearly nothing and the "correlation" runs far above 1."""
    if query.std() < FLAT_STD:
        return np.zeros((image.shape[0] - query.shape[0] + 1, image.shape[1] - query.shape[1] + 1), np.float32)
    scores = match_template(image, query)
    scores[window_std(image, query.shape[0]) < FLAT_STD] = 0
    return np.clip(scores, -1, 1)


def best_match(query: np.ndarray, region: np.ndarray) -> tuple[float, int, int, int]:
    """(correlation, row, column, transform): the highest normalised cross-correlation of ``query``
    (S, S), under any of the 8 transforms, at any shift inside ``region`` (R, R), R >= S. Flat (glass)
    windows correlate 0."""
    best = (-1.0, 0, 0, 0)
    for transform in range(TRANSFORMS):
        scores = correlation_map(region, transform_array(query, transform))
        row, column = np.unravel_index(int(np.argmax(scores)), scores.shape)
        if scores[row, column] > best[0]:
            best = (float(scores[row, column]), int(row), int(column), transform)
    return best


def best_correlation(query: np.ndarray, region: np.ndarray) -> float:
    return best_match(query, region)[0]


def coarse_peaks(query: np.ndarray, thumbnail: np.ndarray, peaks: int = PEAKS) -> list[tuple[float, int, int]]:
    """The ``peaks`` best (correlation, row, column) placements of ``query`` in ``thumbnail``, any
    transform, at least two pixels apart (a peak's neighbours are the same place)."""
    if thumbnail.shape[0] < query.shape[0] or thumbnail.shape[1] < query.shape[1]:
        return []
    best = np.max([correlation_map(thumbnail, transform_array(query, t)) for t in range(TRANSFORMS)], axis=0)
    found, flat = [], best.ravel()
    # the few hundred best are enough to find PEAKS places two pixels apart; sorting them all is not
    head = np.argpartition(-flat, min(len(flat), 256) - 1)[:256]
    for index in head[np.argsort(-flat[head], kind="stable")]:
        row, column = np.unravel_index(index, best.shape)
        if all(abs(row - r) > 2 or abs(column - c) > 2 for _, r, c in found):
            found.append((float(flat[index]), int(row), int(column)))
            if len(found) == peaks:
                break
    return found


class _Slides(OpenSlides):
    """Open slides as grey windows, and the grey thumbnails of a few training slides at the coarse
    scale of the current span (float32: a 100k^2 slide at 1024-px spans is 5 MB; at 256-px spans
    88 MB, hence a bound)."""

    def __init__(self, limit: int = 8):
        super().__init__(limit)
        self.thumbnails: OrderedDict[tuple[str, float], np.ndarray] = OrderedDict()

    def read(self, path: str, x: float, y: float, side: float, pixels: int) -> np.ndarray:
        return grey(self.get(path).read_region(x, y, side, side, out_size=(pixels, pixels)))

    def thumbnail(self, path: str, scale: float) -> np.ndarray:
        if (path, scale) not in self.thumbnails:
            if len(self.thumbnails) >= self.limit:
                self.thumbnails.popitem(last=False)
            slide = self.get(path)
            width, height = slide.dimensions
            size = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
            self.thumbnails[(path, scale)] = grey(slide.read_region(0, 0, size[0] / scale, size[1] / scale, out_size=size))
        self.thumbnails.move_to_end((path, scale))
        return self.thumbnails[(path, scale)]


MATCH_COLUMNS = ("score", "image", "x", "y", "transform")  # image: index into the training paths, -1 none


def verified_matches(queries: CropSet, candidates: np.ndarray, training: CropSet, progress: bool = False,
                    label: str = "crops") -> np.ndarray:
    """Per query, its best fine correlation with any training slide among those of its candidate
    cells (``candidates``: (n, k) lattice rows, -1 for none), and where: a ``MATCH_COLUMNS`` table,
    (x, y) the matched window's origin in level-0 pixels, ``transform`` the one applied to the query."""
    slides = _Slides()
    matches = np.tile(np.array([0.0, -1, 0, 0, 0]), (len(queries), 1))
    try:
        for row in tqdm(range(len(queries)), desc=f"verifying {label}", unit="crop", disable=not progress, file=sys.stderr):
            crop = queries.crops[row]
            path, span = queries.paths[int(crop[0])], float(crop[3])
            scale, margin = COARSE_PX / span, 2 * span / COARSE_PX
            coarse = slides.read(path, crop[1], crop[2], span, COARSE_PX)
            fine = detail(slides.read(path, crop[1], crop[2], span, VERIFY_PX))
            for slide_index in sorted({int(training.crops[c, 0]) for c in candidates[row] if c >= 0}):
                training_path = training.paths[slide_index]
                for _, top, left in coarse_peaks(coarse, slides.thumbnail(training_path, scale)):
                    x0, y0, pixels = left / scale - margin, top / scale - margin, round(VERIFY_PX * (span + 2 * margin) / span)
                    region = detail(slides.read(training_path, x0, y0, span + 2 * margin, pixels))
                    score, match_row, match_column, transform = best_match(fine, region)
                    if score > matches[row, 0]:
                        step = (span + 2 * margin) / pixels
                        matches[row] = (score, slide_index, x0 + match_column * step, y0 + match_row * step, transform)
    finally:
        slides.close()
    return matches
