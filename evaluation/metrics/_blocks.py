"""Feature sets cut into row blocks, so pairwise work over N x N pairs needs O(block²) memory, not O(N²).

Every block is handed out in float64: the metrics built on these sum up to 2.5e9 kernel values or
compare distances against k-NN radii, and float32 Gram matrices lose digits to cancellation in
|x|² + |y|² - 2 x·y when feature norms are large (Inception features) next to their differences.
"""

from __future__ import annotations

from typing import Iterator, NamedTuple

import numpy as np
import torch

from urcdm.errors import UserError

# A 2048 x 2048 float64 tile is 32 MiB: large enough for full-speed matrix products, small enough
# that a handful of live tiles is noise next to the features themselves.
DEFAULT_BLOCK_SIZE = 2048


class Block(NamedTuple):
    start: int
    stop: int
    rows: torch.Tensor           # (stop - start, dim), float64
    squared_norms: torch.Tensor  # (stop - start,), float64


class RowBlocks:
    """One feature set as float64 row blocks on ``device``, optionally scaled to unit L2 norm.

    The features stay in their own dtype (no float64 copy of the whole set, zero-copy on CPU);
    each block is converted when it is handed out, which costs 1/block_size of the products it feeds.
    """

    def __init__(self, features: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE,
                 device: str | torch.device | None = None, unit_norm: bool = False):
        if block_size < 1:
            raise ValueError(f"block_size must be positive, got {block_size}")
        self.block_size = block_size
        self.device = torch.device(device or "cpu")
        self._source = torch.as_tensor(np.ascontiguousarray(features)).to(self.device)
        self._inverse_norms = None
        if unit_norm:
            # Block by block: vector_norm(dtype=float64) on the whole set would make a float64 copy of it.
            norms = torch.cat([torch.linalg.vector_norm(self._source[start:start + block_size].to(torch.float64), dim=1)
                               for start in range(0, len(self), block_size)])
            if bool((norms == 0).any()):
                raise UserError(f"{int((norms == 0).sum())} feature vectors are all zeros and cannot be L2-normalised")
            self._inverse_norms = 1.0 / norms

    def __len__(self) -> int:
        return int(self._source.shape[0])

    def __iter__(self) -> Iterator[Block]:
        return self.blocks()

    def blocks(self, first_row: int = 0) -> Iterator[Block]:
        """The blocks from the one starting at ``first_row`` (a multiple of block_size) on."""
        for start in range(first_row, len(self), self.block_size):
            stop = min(start + self.block_size, len(self))
            rows = self._source[start:stop].to(torch.float64)
            if self._inverse_norms is not None:
                rows = rows * self._inverse_norms[start:stop, None]
            yield Block(start, stop, rows, (rows * rows).sum(dim=1))


def squared_distances(a: Block, b: Block) -> torch.Tensor:
    """|a_i - b_j|² for every pair of rows, clamped at 0 (the expansion can dip just below)."""
    out = a.rows @ b.rows.T
    # In place: one block-sized tensor, where addmm with a broadcast sum would need two.
    return out.mul_(-2.0).add_(a.squared_norms[:, None]).add_(b.squared_norms[None, :]).clamp_min_(0.0)


def upper_triangle(blocks: RowBlocks) -> Iterator[tuple[Block, Block]]:
    """Every (block i, block j) with i <= j: the pairs a symmetric pairwise quantity needs, each once."""
    for first in blocks:
        for second in blocks.blocks(first.start):
            yield first, second
