"""One scale of the audit: features streamed from the pyramids, searched, verified, calibrated.

Features are extracted ``chunk`` crops at a time through ``evaluation.extraction.extract_features``
(crops read by ``CropDataset``, a few tiles each). Training features go straight into a float32
memory-mapped file, which the search reads block by block; query chunks are searched as they come
and only their top-k is kept. Memory is therefore a chunk of features plus one score block,
whatever the number of crops. Verification (``verification``) then searches the training slides
of each synthetic and held-out crop's k candidates by correlation; the threshold and the copy
decisions use that correlation (or, with verification off, the feature similarity).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from evaluation.crops import CropProtocol
from evaluation.extraction import extract_features
from evaluation.features import Extractor
from evaluation.memorization.calibration import copy_threshold, is_copy
from evaluation.memorization.crop_sets import CropSet
from evaluation.memorization.dihedral import TRANSFORMS, dihedral_extractor
from evaluation.memorization.search import Neighbours, cosine_topk, euclidean_nearest, merge_transforms
from evaluation.memorization.verification import verified_matches

FEATURE_CHUNK = 4096


@dataclass
class SearchOptions:
    k: int = 5
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str = "torch"
    dihedral: bool = True
    # Cosine about the training features' mean. Off by default: it spreads the similarities of
    # all-positive (ReLU-pooled) features out from near 1, but it also magnifies small differences
    # such as JPEG noise; with random ResNet-18 features it found 66 % of lattice-aligned JPEG copies
    # where the plain cosine found 100 % (benchmarks/bench_memorization.py, same-slide).
    center: bool = False
    batch_size: int = 64
    workers: int = 2
    chunk: int = FEATURE_CHUNK
    authenticity: bool = True   # needs a training x training search as large as the main one
    verify: bool = True         # search each crop's candidate slides by correlation (verification.py)
    progress: bool = True


@dataclass
class QueryResult:
    neighbours: Neighbours      # cosine top-k over the training lattice, best over the transforms
    transforms: np.ndarray      # (n, k) which transform of the query matched (0 = as generated)
    nearest_euclidean: Neighbours  # untransformed features, raw Euclidean nearest (authenticity)

    @property
    def nearest_similarity(self) -> np.ndarray:
        return self.neighbours.scores[:, 0]


@dataclass
class ScaleAudit:
    protocol: CropProtocol
    stride: int
    training: CropSet
    synthetic: CropSet
    heldout: CropSet
    synthetic_result: QueryResult
    heldout_result: QueryResult
    training_nearest_distance: np.ndarray | None  # each training crop to its nearest other one
    quantile: float
    threshold: float
    seconds: dict
    synthetic_match: np.ndarray | None = None  # verification's MATCH_COLUMNS table per crop
    heldout_match: np.ndarray | None = None

    @property
    def synthetic_verified(self) -> np.ndarray | None:
        return None if self.synthetic_match is None else self.synthetic_match[:, 0]

    @property
    def heldout_verified(self) -> np.ndarray | None:
        return None if self.heldout_match is None else self.heldout_match[:, 0]

    @property
    def score_name(self) -> str:
        return "correlation" if self.synthetic_verified is not None else "similarity"

    @property
    def synthetic_score(self) -> np.ndarray:
        """What decides a copy: the verified correlation, or without verification the similarity."""
        return self.synthetic_result.nearest_similarity if self.synthetic_verified is None else self.synthetic_verified

    @property
    def heldout_score(self) -> np.ndarray:
        return self.heldout_result.nearest_similarity if self.heldout_verified is None else self.heldout_verified

    @property
    def span(self) -> int:
        return int(self.protocol.span)

    @property
    def synthetic_copies(self) -> np.ndarray:
        return is_copy(self.synthetic_score, self.threshold)

    @property
    def heldout_copies(self) -> np.ndarray:
        return is_copy(self.heldout_score, self.threshold)


def audit_scale(protocol: CropProtocol, stride: int, training: CropSet, synthetic: CropSet, heldout: CropSet,
                extractor: Extractor, quantile: float, workdir: Path, options: SearchOptions) -> ScaleAudit:
    seconds = {}
    started = time.perf_counter()
    database, mean = training_features(training, protocol, extractor, workdir / f"training-span{protocol.span}.npy", options)
    center = mean if options.center else None
    seconds["training_features"] = time.perf_counter() - started
    try:
        started = time.perf_counter()
        synthetic_result = search_queries(synthetic, protocol, extractor, database, center, options, "synthetic")
        seconds["synthetic"] = time.perf_counter() - started
        started = time.perf_counter()
        heldout_result = search_queries(heldout, protocol, extractor, database, center, options, "held-out")
        seconds["heldout"] = time.perf_counter() - started
        nearest_other = None
        if options.authenticity:
            started = time.perf_counter()
            nearest_other = euclidean_nearest(database, database, options.device, exclude_self=True).scores[:, 0]
            seconds["training_self_search"] = time.perf_counter() - started
    finally:
        path = Path(database.filename)
        del database
        path.unlink(missing_ok=True)
    verified = {}
    if options.verify:
        started = time.perf_counter()
        for name, crops, found in (("synthetic", synthetic, synthetic_result), ("held-out", heldout, heldout_result)):
            verified[name] = verified_matches(crops, found.neighbours.indices, training, options.progress, name)
        seconds["verification"] = time.perf_counter() - started
    audit = ScaleAudit(protocol, stride, training, synthetic, heldout, synthetic_result, heldout_result,
                       nearest_other, quantile, 0.0, seconds, verified.get("synthetic"), verified.get("held-out"))
    audit.threshold = copy_threshold(audit.heldout_score, quantile)
    return audit


def training_features(training: CropSet, protocol: CropProtocol, extractor: Extractor, path: Path,
                      options: SearchOptions) -> tuple[np.memmap, np.ndarray]:
    """The training lattice's features (as they are, untransformed) in a memmap at ``path``, and their mean."""
    database, total = None, None
    for start, features in _feature_chunks(training, protocol, extractor, options, f"training span {protocol.span}"):
        if database is None:
            database = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(training), features.shape[1]))
            total = np.zeros(features.shape[1], np.float64)
        database[start:start + len(features)] = features
        total += features.sum(axis=0, dtype=np.float64)
    database.flush()
    return database, (total / len(training)).astype(np.float32)


def search_queries(queries: CropSet, protocol: CropProtocol, extractor: Extractor, database: np.ndarray,
                   center: np.ndarray | None, options: SearchOptions, side: str) -> QueryResult:
    """Each query crop's k nearest training crops by cosine similarity (best over the 8 transforms
    when ``options.dihedral``), and its raw Euclidean nearest neighbour as generated. ``center``:
    subtract it (the training features' mean) before the cosine, or None for the plain cosine.
    """
    transforms = TRANSFORMS if options.dihedral else 1
    network = dihedral_extractor(extractor) if options.dihedral else extractor
    # The network sees 8 images per crop under dihedral queries: keep its batch the size asked for.
    batch = max(1, options.batch_size // transforms)
    parts: list[tuple[Neighbours, np.ndarray, Neighbours]] = []
    for _, features in _feature_chunks(queries, protocol, network, options, f"{side} span {protocol.span}", batch):
        per_transform = features.reshape(len(features) * transforms, -1)
        found = cosine_topk(per_transform, database, options.k, options.device, options.backend, center)
        if transforms > 1:
            found, matched = merge_transforms(found, transforms, options.k)
        else:
            matched = np.zeros_like(found.indices)
        as_generated = features.reshape(len(features), transforms, -1)[:, 0]
        parts.append((found, matched, euclidean_nearest(as_generated, database, options.device)))
    return QueryResult(
        Neighbours(np.concatenate([p[0].scores for p in parts]), np.concatenate([p[0].indices for p in parts])),
        np.concatenate([p[1] for p in parts]),
        Neighbours(np.concatenate([p[2].scores for p in parts]), np.concatenate([p[2].indices for p in parts])),
    )


def _feature_chunks(crop_set: CropSet, protocol: CropProtocol, extractor: Extractor, options: SearchOptions,
                    label: str, batch_size: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    if options.progress:
        print(f"memorization: {label}: {len(crop_set)} crops", file=sys.stderr)
    for start in range(0, len(crop_set), options.chunk):
        crops = crop_set.crops[start:start + options.chunk]
        features = extract_features(crop_set.paths, crops, protocol, extractor, batch_size or options.batch_size,
                                    options.workers, label=label)
        yield start, features
