"""Pure maths of the training windows: the half-span lattice, the context window centred on a target,
the 8 dihedral transforms, the step-addressed batches and the held-out blocks.

Batches are addressed by step: the pairs of step s are drawn from a generator seeded with
(seed, rank, s), so a resumed run reads exactly the batches the uninterrupted run would have, with any
number of DataLoader workers, and from slides or from shards alike.
"""

from __future__ import annotations

import hashlib

import numpy as np

DIHEDRAL = 8


def lattice(extent: int, span: int) -> list[int]:
    """Window origins along one axis: a half-span lattice over the slide; a slide narrower than the
    window gets one window centred on it (padded with fill)."""
    if span >= extent:
        return [(extent - span) // 2]
    step = max(span // 2, 1)
    origins = list(range(0, extent - span + 1, step))
    if origins[-1] != extent - span:
        origins.append(extent - span)
    return origins


def context_window(x: int, y: int, span: int, context_span: int) -> tuple[float, float, int]:
    """Origin of the previous level's window centred on the target window (x, y, span)."""
    centre_x, centre_y = x + span / 2, y + span / 2
    return centre_x - context_span / 2, centre_y - context_span / 2, context_span


def dihedral(pixels: np.ndarray, k: int) -> np.ndarray:
    """Transform k of the 8 symmetries of the square: k % 4 quarter turns, then a mirror when k >= 4.
    A view: the one copy is made where the pixels change layout anyway (HWC -> CHW; a copy here and
    there halved the rate of 1024-px pairs)."""
    out = np.rot90(pixels, k % 4, axes=(0, 1))
    return out[:, ::-1] if k >= 4 else out


def batch_codes(seed: int, step: int, batch_size: int, positions: int, rank: int = 0) -> np.ndarray:
    """The pairs of one training step, as codes ``position * 8 + transform``."""
    rng = np.random.default_rng([seed, rank, step])
    return rng.integers(positions, size=batch_size) * DIHEDRAL + rng.integers(DIHEDRAL, size=batch_size)


def split_validation(positions: np.ndarray, span: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out positions. Whole blocks of 2 x 2 spans are held out together: half-span
    windows overlap their neighbours, so holding out single windows would put most validation pixels
    in training windows too (only windows on a block's border still share pixels across the split)."""
    blocks = np.stack([positions[:, 0], positions[:, 1] // (2 * span), positions[:, 2] // (2 * span)], axis=1)
    keys = [hashlib.sha256(f"{seed}:{a}:{b}:{c}".encode()).digest()[:8] for a, b, c in blocks]
    draws = np.array([int.from_bytes(k, "little") / 2**64 for k in keys])
    held = draws < fraction
    if fraction > 0 and not held.any() and len(held) > 1:
        held[int(np.argmin(draws))] = True
    return held
