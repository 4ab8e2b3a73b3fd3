"""Multi-GPU / multi-node feature extraction under ``torchrun``: each rank takes a strided shard
of the crops, and the features are gathered back into crop order, so results equal one process."""

from __future__ import annotations

import numpy as np
import torch.distributed as dist

from urcdm.distributed import Ranks, all_errors, destroy_process_group, init_process_group, launched_ranks, resolve_device

__all__ = ["Ranks", "all_errors", "destroy_process_group", "gather_in_order", "init_process_group", "launched_ranks",
           "resolve_device"]


def gather_in_order(local: np.ndarray, ranks: Ranks, n: int) -> np.ndarray:
    """Reassemble every rank's strided shard into the full (n, D) array, on every rank."""
    if ranks.world_size == 1:
        return local
    pieces: list = [None] * ranks.world_size
    dist.all_gather_object(pieces, local)
    # A rank left without crops (n < world size) sends an empty (0, 0) piece; take D from the others.
    full = np.empty((n, max(piece.shape[1] for piece in pieces)), dtype=local.dtype)
    for rank, piece in enumerate(pieces):
        if len(piece):
            full[rank::ranks.world_size] = piece
    return full
