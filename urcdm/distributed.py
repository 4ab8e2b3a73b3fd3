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


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``--device`` as typed, checked against this machine before any work: ``auto`` is this rank's
    GPU when there is one, else the CPU; ``cuda`` is this rank's GPU (``LOCAL_RANK`` under torchrun)."""
    from urcdm.errors import UserError

    if name == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name}: not a device torch knows; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"--device {name}: torch sees no CUDA GPU on this machine; use --device cpu or auto")
        index = local_rank if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                            f"numbered from 0")
        return torch.device("cuda", index)
    if device.type not in ("cpu", "mps") or (device.type == "mps" and not torch.backends.mps.is_available()):
        raise UserError(f"--device {name}: not available here; use auto, cpu, cuda or cuda:N")
    return device


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
