"""Ranks under ``torchrun``: who am I, how many are we, and the process group (NCCL on GPUs, gloo on
CPU). Shared by the sampler and by evaluation; one process when not launched by torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, n: int) -> np.ndarray:
        return np.arange(self.rank, n, self.world_size)


def launched_ranks() -> Ranks:
    """The ranks torchrun set in the environment (one process when not launched by it)."""
    return Ranks(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    if ranks.world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_errors(message: str, ranks: Ranks) -> list[str]:
    """Every rank's error message (empty when fine), so all ranks fail together and rank 0 reports."""
    if ranks.world_size == 1:
        return [message] if message else []
    messages: list = [None] * ranks.world_size
    dist.all_gather_object(messages, message)
    return [m for m in messages if m]
