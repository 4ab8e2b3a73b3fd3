"""Exact k-nearest-neighbour search over feature sets of any size, in bounded memory (pure maths).

Queries and database are both cut into blocks: one (query block x database block) score matrix
exists at a time, and each query keeps a running top-k as the database blocks go by. The database
may be a ``numpy.memmap``, so the training features never need to fit in memory. Exact, not
approximate: a memorisation audit is about the single closest training crop, which an approximate
index may miss.

Backends: ``torch`` (CPU or CUDA, the default) or ``faiss`` (exact inner-product index per block,
CPU; only when the ``faiss`` package is installed). ``auto`` takes faiss when it is importable.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from urcdm.errors import UserError

BACKENDS = ("torch", "faiss", "auto")
QUERY_BLOCK = 4096
DATABASE_BLOCK = 16384
_MERGE_ROWS = 2048


@dataclass
class Neighbours:
    """Per query, its k nearest database rows, nearest first."""

    scores: np.ndarray   # (n, k) float32: cosine similarity (descending) or Euclidean distance (ascending)
    indices: np.ndarray  # (n, k) int64 database rows


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def resolve_backend(backend: str, device: torch.device | str) -> str:
    if backend not in BACKENDS:
        raise UserError(f"search backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    on_cpu = torch.device(device).type == "cpu"
    if backend == "auto":
        return "faiss" if faiss_available() and on_cpu else "torch"
    if backend == "faiss" and not faiss_available():
        raise UserError("search backend faiss: the faiss package is not installed (pip install faiss-cpu), or use torch")
    if backend == "faiss" and not on_cpu:
        raise UserError("search backend faiss runs on the CPU here; use the torch backend on CUDA")
    return backend


def cosine_topk(queries, database, k: int, device: torch.device | str = "cpu", backend: str = "torch",
                center: np.ndarray | None = None, query_block: int = QUERY_BLOCK,
                database_block: int = DATABASE_BLOCK) -> Neighbours:
    """The ``k`` database rows of highest cosine similarity to each query row (exact), measured
    about ``center`` (subtracted from both sides first) when given."""
    k = _check_sizes(queries, database, k, exclude_self=False)
    if resolve_backend(backend, device) == "faiss":
        return _faiss_cosine_topk(queries, database, k, center, query_block, database_block)
    device = torch.device(device)
    offset = None if center is None else torch.as_tensor(np.asarray(center, np.float32), device=device)

    def unit_rows(x: torch.Tensor) -> torch.Tensor:
        # An all-zero row stays zero: similarity 0 to everything.
        return F.normalize(x if offset is None else x - offset, dim=1)

    best, rows = _blockwise_topk(queries, database, k, unit_rows, _inner_products, device,
                                 query_block, database_block, exclude_self=False)
    return Neighbours(best, rows)


def euclidean_nearest(queries, database, device: torch.device | str = "cpu", exclude_self: bool = False,
                      query_block: int = QUERY_BLOCK, database_block: int = DATABASE_BLOCK) -> Neighbours:
    """Each query's nearest database row by Euclidean distance (k = 1). ``exclude_self``: queries
    and database are the same set, and row i may not be its own neighbour (a duplicate row at
    another index still counts, at distance 0)."""
    _check_sizes(queries, database, 1, exclude_self)
    device = torch.device(device)
    # Rows are ranked through 2 q.d - |d|^2, which loses the small distances of near-copies to
    # cancellation when the norms are large; shifting both sides by one common vector (any vector:
    # distances do not change) keeps the norms small.
    shift = torch.from_numpy(np.ascontiguousarray(database[:database_block], dtype=np.float32).mean(axis=0)).to(device)
    _, rows = _blockwise_topk(queries, database, 1, lambda x: x - shift, _nearness,
                              device, query_block, database_block, exclude_self)
    # The winners' distances again, directly from the differences: exact where it matters most.
    distances = np.empty((len(queries), 1), np.float32)
    for start in range(0, len(queries), query_block):
        block = np.asarray(queries[start:start + query_block], dtype=np.float32)
        # Sorted unique rows: one ordered gather, also from a memmap.
        wanted, lookup = np.unique(rows[start:start + len(block), 0], return_inverse=True)
        nearest = np.asarray(database[wanted], dtype=np.float32)
        distances[start:start + len(block), 0] = np.linalg.norm(block - nearest[lookup.reshape(-1)], axis=1)
    return Neighbours(distances, rows)


def merge_transforms(neighbours: Neighbours, transforms: int, k: int) -> tuple[Neighbours, np.ndarray]:
    """Fold the results of ``transforms`` transformed copies of each query (rows ``i * transforms
    + t``) into one top-k per query: the best similarity of each database row over the transforms,
    each row once. Returns (neighbours, which transform gave each neighbour)."""
    rows_per_query = transforms * neighbours.scores.shape[1]
    scores = neighbours.scores.reshape(-1, rows_per_query)
    indices = neighbours.indices.reshape(-1, rows_per_query)
    transform_of = np.repeat(np.arange(transforms), neighbours.scores.shape[1])
    k = min(k, rows_per_query)
    best = np.empty((len(scores), k), np.float32)
    best_rows = np.empty((len(scores), k), np.int64)
    best_transform = np.empty((len(scores), k), np.int64)
    for start in range(0, len(scores), _MERGE_ROWS):
        block = slice(start, start + _MERGE_ROWS)
        order = np.argsort(-scores[block], axis=1, kind="stable")
        sorted_scores = np.take_along_axis(scores[block], order, axis=1).copy()
        sorted_rows = np.take_along_axis(indices[block], order, axis=1)
        # A database row reached under several transforms keeps only its best (first) entry.
        same = sorted_rows[:, :, None] == sorted_rows[:, None, :]
        seen_before = np.tril(same, k=-1).any(axis=2)
        sorted_scores[seen_before] = -np.inf
        keep = np.argsort(-sorted_scores, axis=1, kind="stable")[:, :k]
        best[block] = np.take_along_axis(sorted_scores, keep, axis=1)
        best_rows[block] = np.take_along_axis(sorted_rows, keep, axis=1)
        best_transform[block] = transform_of[np.take_along_axis(order, keep, axis=1)]
    return Neighbours(best, best_rows), best_transform


def _check_sizes(queries, database, k: int, exclude_self: bool) -> int:
    if len(database) - exclude_self < 1:
        raise UserError(f"nearest-neighbour search needs at least {1 + exclude_self} training crop(s), got {len(database)}")
    if len(queries) and queries.shape[1] != database.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} features, the database {database.shape[1]}")
    if k < 1:
        raise UserError(f"k must be at least 1, got {k}")
    return min(k, len(database) - exclude_self)


def _inner_products(queries: torch.Tensor, database: torch.Tensor) -> torch.Tensor:
    return queries @ database.T


def _nearness(queries: torch.Tensor, database: torch.Tensor) -> torch.Tensor:
    """2 q.d - |d|^2: larger is nearer, and per query it ranks rows as -|q - d|^2 does (the two differ
    by |q|^2, the same along a row). One fused matrix product, no extra passes over the block."""
    return torch.addmm(-(database * database).sum(1), queries, database.T, alpha=2)


def _block(array, start: int, size: int, device: torch.device) -> torch.Tensor:
    rows = np.ascontiguousarray(array[start:start + size], dtype=np.float32)
    return torch.from_numpy(rows).to(device)


def _blockwise_topk(queries, database, k: int, prepare: Callable[[torch.Tensor], torch.Tensor],
                    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], device: torch.device,
                    query_block: int, database_block: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    best_scores = np.empty((len(queries), k), np.float32)
    best_rows = np.empty((len(queries), k), np.int64)
    with torch.inference_mode():
        for q_start in range(0, len(queries), query_block):
            query = prepare(_block(queries, q_start, query_block, device))
            running = torch.full((len(query), k), -torch.inf, device=device)
            running_rows = torch.full((len(query), k), -1, dtype=torch.int64, device=device)
            for d_start in range(0, len(database), database_block):
                scores = score(query, prepare(_block(database, d_start, database_block, device)))
                if exclude_self:
                    _mask_self(scores, q_start, d_start)
                top = scores.topk(min(k, scores.shape[1]), dim=1)
                candidates = torch.cat([running, top.values], dim=1)
                candidate_rows = torch.cat([running_rows, top.indices + d_start], dim=1)
                kept = candidates.topk(k, dim=1)
                running, running_rows = kept.values, candidate_rows.gather(1, kept.indices)
            best_scores[q_start:q_start + len(query)] = running.cpu().numpy()
            best_rows[q_start:q_start + len(query)] = running_rows.cpu().numpy()
    return best_scores, best_rows


def _mask_self(scores: torch.Tensor, q_start: int, d_start: int) -> None:
    """Rule out query i == database row i where this block holds both."""
    rows, cols = scores.shape
    first, last = max(q_start, d_start), min(q_start + rows, d_start + cols)
    if first < last:
        diagonal = torch.arange(first, last, device=scores.device)
        scores[diagonal - q_start, diagonal - d_start] = -torch.inf


def _faiss_cosine_topk(queries, database, k: int, center: np.ndarray | None, query_block: int,
                       database_block: int) -> Neighbours:
    import faiss

    offset = np.zeros(database.shape[1], np.float32) if center is None else np.asarray(center, np.float32)

    running = np.full((len(queries), k), -np.inf, np.float32)
    running_rows = np.full((len(queries), k), -1, np.int64)
    for d_start in range(0, len(database), database_block):
        block = np.ascontiguousarray(database[d_start:d_start + database_block] - offset, dtype=np.float32)
        faiss.normalize_L2(block)
        index = faiss.IndexFlatIP(block.shape[1])
        index.add(block)
        for q_start in range(0, len(queries), query_block):
            query = np.ascontiguousarray(queries[q_start:q_start + query_block] - offset, dtype=np.float32)
            faiss.normalize_L2(query)
            scores, rows = index.search(query, min(k, len(block)))
            window = slice(q_start, q_start + len(query))
            candidates = np.concatenate([running[window], scores], axis=1)
            candidate_rows = np.concatenate([running_rows[window], np.where(rows >= 0, rows + d_start, -1)], axis=1)
            keep = np.argsort(-candidates, axis=1, kind="stable")[:, :k]
            running[window] = np.take_along_axis(candidates, keep, axis=1)
            running_rows[window] = np.take_along_axis(candidate_rows, keep, axis=1)
    return Neighbours(running, running_rows)
