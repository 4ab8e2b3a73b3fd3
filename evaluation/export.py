"""Crop sets on disk: PNGs plus a manifest CSV (the reader-study app reads these).

The directory appears only when complete: crops are written to a hidden sibling and renamed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from evaluation.pipeline import CropPlan
from evaluation.crops import CROP_COLUMNS, CropProtocol, plain_numbers
from evaluation.reading import CropDataset
from urcdm.errors import SlideError
from urcdm.interrupts import ignore_interrupts
from urcdm.pyramid import atomic_directory

MANIFEST = "manifest.csv"
EXPORTED_FILES = (MANIFEST, "crop-*.png")  # all an export writes: what --overwrite may replace
MANIFEST_COLUMNS = ("file", "source", *CROP_COLUMNS, "pixels", "mode", "level", "mpp", "seed")


def exported_protocol(protocol: CropProtocol) -> CropProtocol:
    """Crops are saved at the protocol's read size: the study shows the crop itself, not the
    extractor's resized input."""
    return protocol.with_image_size(protocol.read_size)


def export_crops(plan: CropPlan, protocol: CropProtocol, out_dir: Path, overwrite: bool = False, workers: int = 2) -> Path:
    out_dir = Path(out_dir)
    native = exported_protocol(protocol)
    dataset = CropDataset([image.path for image in plan.images], plan.crops, native)
    try:
        with atomic_directory(out_dir, overwrite, ours=EXPORTED_FILES) as temp:
            width = len(str(len(plan.crops)))
            with open(temp / MANIFEST, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(MANIFEST_COLUMNS)
                loader = DataLoader(dataset, batch_size=None, num_workers=workers, worker_init_fn=ignore_interrupts)
                for index, pixels, message in tqdm(loader, total=len(dataset), desc="exporting crops", unit="crop", leave=False):
                    if message:
                        raise SlideError(message)
                    crop = plain_numbers(plan.crops[index])
                    name = f"crop-{index:0{width}d}.png"
                    Image.fromarray(pixels.permute(1, 2, 0).numpy()).save(temp / name)
                    writer.writerow((name, plan.images[crop[0]].path, *crop, native.read_size, protocol.mode,
                                     "" if protocol.level is None else protocol.level,
                                     "" if protocol.mpp is None else protocol.mpp, plan.seed))
    finally:
        dataset.close()
    return out_dir
