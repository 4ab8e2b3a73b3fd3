"""A scale's audit as JSON-able numbers, a per-crop neighbours CSV, and the closest-pairs montage."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from evaluation.crops import plain_numbers
from evaluation.memorization.calibration import (REPORTED_QUANTILES, authenticity_percent, copy_rate, copy_threshold,
                                                 histograms, summary, wilson_interval)
from evaluation.memorization.dihedral import TRANSFORM_NAMES, transform_array
from evaluation.memorization.montage import Pair, read_crop_pixels, save_montage
from evaluation.memorization.scale_audit import ScaleAudit
from urcdm.pyramid import atomic_output

NEIGHBOUR_COLUMNS = ("synthetic_index", "synthetic_image", "x", "y", "size", "rank", "similarity", "copy", "transform",
                     "training_image", "training_x", "training_y", "training_size")


def scale_report(result: ScaleAudit, pairs: int) -> dict:
    synthetic, heldout = result.synthetic_score, result.heldout_score
    copies = int(result.synthetic_copies.sum())
    low, high = wilson_interval(copies, len(synthetic))
    heldout_rate = copy_rate(heldout, result.threshold)
    by_quantile = {}
    for quantile in sorted({*REPORTED_QUANTILES, result.quantile}):
        threshold = copy_threshold(heldout, quantile)
        by_quantile[f"{quantile:g}"] = {"threshold": threshold, "synthetic": copy_rate(synthetic, threshold),
                                        "heldout": copy_rate(heldout, threshold)}
    return {
        "span": result.span,
        "patch_size": result.protocol.patch_size,
        "image_size": result.protocol.image_size,
        "stride": result.stride,
        "protocol": result.protocol.as_dict(),
        "crops": {"training": len(result.training), "synthetic": len(result.synthetic), "heldout": len(result.heldout)},
        "slides": {"training": result.training.slides_used, "synthetic": result.synthetic.slides_used,
                   "heldout": result.heldout.slides_used},
        "copy_score": result.score_name,
        "threshold": {"quantile": result.quantile, result.score_name: result.threshold, "heldout_flagged": heldout_rate},
        "copies": copies,
        "copy_rate": copy_rate(synthetic, result.threshold),
        "copy_rate_ci95": [low, high],
        # What the copy rate would be if synthetic crops were as novel as held-out real tissue.
        "excess_copy_rate": copy_rate(synthetic, result.threshold) - heldout_rate,
        "copy_rate_by_quantile": by_quantile,
        "nearest_similarity": {"synthetic": summary(result.synthetic_result.nearest_similarity),
                               "heldout": summary(result.heldout_result.nearest_similarity)},
        **({"verified_correlation": {"synthetic": summary(synthetic), "heldout": summary(heldout)}}
           if result.synthetic_verified is not None else {}),
        "histogram": histograms({"synthetic": synthetic, "heldout": heldout}),
        "authenticity_percent": _authenticity(result),
        "closest_pairs": closest_pairs(result, pairs),
        "seconds": {key: round(value, 3) for key, value in result.seconds.items()},
    }


def closest_pairs(result: ScaleAudit, count: int) -> list[dict]:
    """The ``count`` synthetic crops most similar to a training crop, most similar first."""
    similarity, score = result.synthetic_result.nearest_similarity, result.synthetic_score
    pairs = []
    for rank, row in enumerate(_closest_rows(result, count), start=1):
        training_crop, transform = matched_training_crop(result, int(row))
        pairs.append({
            "rank": rank,
            "similarity": float(similarity[row]),
            result.score_name: float(score[row]),
            "copy": bool(score[row] > result.threshold),
            "transform": TRANSFORM_NAMES[transform],
            "synthetic": _where(result.synthetic.paths, result.synthetic.crops[row]),
            "training": _where(result.training.paths, training_crop),
        })
    return pairs


def write_neighbours_csv(result: ScaleAudit, path: Path, overwrite: bool = False) -> Path:
    """Every synthetic crop with its k nearest training crops (one row per neighbour)."""
    found = result.synthetic_result
    copies = result.synthetic_copies
    with atomic_output(Path(path), overwrite) as temp, open(temp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NEIGHBOUR_COLUMNS)
        for row, crop in enumerate(result.synthetic.crops):
            synthetic_image = result.synthetic.paths[int(crop[0])]
            for rank, (score, train_row, transform) in enumerate(
                    zip(found.neighbours.scores[row], found.neighbours.indices[row], found.transforms[row]), start=1):
                if train_row < 0:
                    continue
                training_crop = result.training.crops[train_row]
                writer.writerow((row, synthetic_image, *plain_numbers(crop[1:4]), rank, f"{score:.6f}",
                                 int(rank == 1 and copies[row]), TRANSFORM_NAMES[int(transform)],
                                 result.training.paths[int(training_crop[0])], *plain_numbers(training_crop[1:4])))
    return Path(path)


def write_montage(result: ScaleAudit, count: int, path: Path, overwrite: bool = False) -> Path:
    pairs = []
    for rank, row in enumerate(_closest_rows(result, count), start=1):
        score = float(result.synthetic_score[row])
        training_crop, transform = matched_training_crop(result, int(row))
        synthetic_crop = result.synthetic.crops[row]
        synthetic_path = result.synthetic.paths[int(synthetic_crop[0])]
        training_path = result.training.paths[int(training_crop[0])]
        caption = (f"#{rank} {result.score_name} {score:.4f}" + (" COPY" if score > result.threshold else ""),
                   f"synthetic {TRANSFORM_NAMES[transform]}: {_short(synthetic_path)} {_xy(synthetic_crop)}",
                   f"training: {_short(training_path)} {_xy(training_crop)}")
        pairs.append(Pair(transform_array(read_crop_pixels(synthetic_path, synthetic_crop, result.protocol), transform),
                          read_crop_pixels(training_path, training_crop, result.protocol), caption,
                          score > result.threshold))
    title = (f"span {result.span} px: the {len(pairs)} synthetic crops closest to a training crop",
             "left: synthetic (turned as matched), right: training; red frame: above the copy threshold",
             f"copy threshold: {result.score_name} {result.threshold:.4f} = held-out p{100 * result.quantile:g}")
    return save_montage(pairs, title, path, overwrite)


def _authenticity(result: ScaleAudit) -> dict:
    if result.training_nearest_distance is None:
        return {"synthetic": None, "heldout": None}
    values = {}
    for side, found in (("synthetic", result.synthetic_result), ("heldout", result.heldout_result)):
        values[side] = authenticity_percent(found.nearest_euclidean.scores[:, 0], found.nearest_euclidean.indices[:, 0],
                                            result.training_nearest_distance)
    return values


def _closest_rows(result: ScaleAudit, count: int) -> np.ndarray:
    """The ``count`` highest-scoring synthetic crops, each place once: crops are drawn with
    replacement, and an image with room for one crop at this span gives the same crop every turn
    (a montage of 16 copies of one pair before)."""
    rows, seen = [], set()
    for row in np.argsort(-result.synthetic_score, kind="stable"):
        place = tuple(result.synthetic.crops[row, :4])
        if place not in seen:
            seen.add(place)
            rows.append(int(row))
            if len(rows) == count:
                break
    return np.array(rows, dtype=np.int64)


def matched_training_crop(result: ScaleAudit, row: int) -> tuple[np.ndarray, int]:
    """Where synthetic crop ``row`` matched, as a training crop-table row, and the transform that turns
    it onto that place: the window verification found or, without one, the nearest lattice cell."""
    match = None if result.synthetic_match is None else result.synthetic_match[row]
    if match is None or match[1] < 0:
        return result.training.crops[int(result.synthetic_result.neighbours.indices[row, 0])], \
            int(result.synthetic_result.transforms[row, 0])
    _, image, x, y, transform = match
    # No frame: verification read its windows as they lie, reaching past the slide's edge into the
    # fill where a peak sits there, so the montage reads the matched window the same way.
    return np.array([image, x, y, result.span]), int(transform)


def _where(paths: list[str], crop: np.ndarray) -> dict:
    x, y, size = plain_numbers(crop[1:4])
    return {"image": paths[int(crop[0])], "x": x, "y": y, "size": size}


def _xy(crop: np.ndarray) -> str:
    return f"({crop[1]:.0f}, {crop[2]:.0f})"


def _short(path: str, limit: int = 28) -> str:
    name = Path(path).name
    return name if len(name) <= limit else "..." + name[-(limit - 3):]


def jsonable(value):
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
