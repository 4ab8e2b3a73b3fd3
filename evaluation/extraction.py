"""Crops -> features, batched on the extractor's device with crops read in parallel workers."""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from evaluation.crops import CropProtocol
from evaluation.distributed import Ranks, all_errors, gather_in_order
from evaluation.features import Extractor
from evaluation.reading import CropDataset
from urcdm.errors import SlideError, UserError
from urcdm.interrupts import ignore_interrupts


def extract_features(paths: list[str], crops: np.ndarray, protocol: CropProtocol, extractor: Extractor,
                     batch_size: int = 64, workers: int = 4, ranks: Ranks = Ranks(), label: str = "crops") -> np.ndarray:
    """Features (len(crops), D) float32 in crop order; each rank reads its shard, all get the result."""
    if batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    if workers < 0:
        raise UserError("--workers must be 0 or more")
    dataset = CropDataset(paths, crops, protocol)
    shard = ranks.shard(len(crops))
    loader = DataLoader(Subset(dataset, shard.tolist()), batch_size=batch_size, num_workers=workers,
                        pin_memory=extractor.device.type == "cuda", prefetch_factor=4 if workers else None,
                        persistent_workers=False, worker_init_fn=ignore_interrupts)
    chunks, error = [], ""
    bar = tqdm(total=len(crops), desc=f"features ({label})", unit="crop", disable=not ranks.is_main, leave=False)
    try:
        for _, images, messages in loader:
            failed = [m for m in messages if m]
            if failed:
                error = failed[0] + (f" (and {len(failed) - 1} more in this batch)" if len(failed) > 1 else "")
                break
            chunks.append(extractor(images))
            bar.update(len(images) * ranks.world_size)
    finally:
        bar.close()
        dataset.close()
    errors = all_errors(error, ranks)
    if errors:
        raise SlideError(errors[0])
    local = np.concatenate(chunks) if chunks else np.empty((0, 0), np.float32)
    return gather_in_order(local, ranks, len(crops))
