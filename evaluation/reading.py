"""Crops -> pixels: a torch ``Dataset`` that reads each crop through the slide layer.

``Slide.read_region`` picks the pyramid level that matches the crop's scale, so a 41344^2 slide
costs a few tiles per crop, never the whole image. Each DataLoader worker keeps a few slides open
(an LRU) because crops are sorted by image.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from evaluation.crops import CropProtocol, crop_frame
from urcdm.slides import OpenSlides, Slide

_OPEN_SLIDES = 8


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size``; an image already that size passes through unchanged.

    PIL's bicubic with antialiasing, the resize clean-fid recommends, rather than the extractor's
    own (often aliasing) tensor interpolation.
    """
    if rgb.shape[0] == size and rgb.shape[1] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC))


def read_crop(slide: Slide, crop: Sequence[float], protocol: CropProtocol) -> np.ndarray:
    """One crop-table row (see ``CROP_COLUMNS``) as RGB uint8 (image_size, image_size, 3)."""
    _, x, y, size = (float(v) for v in crop[:4])
    pixels = slide.read_region(x, y, size, size, out_size=(protocol.read_size, protocol.read_size), within=crop_frame(crop),
                               resample=protocol.resample)
    return resize_square(pixels, protocol.image_size)


class CropDataset(Dataset):
    """Item ``i`` is ``(i, uint8 tensor (3, S, S), error message or "")``.

    Read failures come back as messages rather than exceptions, so the caller can name the file in
    one clean error line instead of a DataLoader worker traceback.
    """

    def __init__(self, paths: Sequence[str], crops: np.ndarray, protocol: CropProtocol):
        self.paths = list(paths)
        self.crops = np.asarray(crops, dtype=np.float64)
        self.protocol = protocol
        self._slides = OpenSlides(_OPEN_SLIDES)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int):
        crop = self.crops[index]
        size = self.protocol.image_size
        try:
            pixels = read_crop(self._slides.get(self.paths[int(crop[0])]), crop, self.protocol)
        except Exception as exc:  # reported by the caller with the file name
            message = f"{self.paths[int(crop[0])]}: crop at ({crop[1]:g}, {crop[2]:g}) size {crop[3]:g}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            return index, torch.zeros((3, size, size), dtype=torch.uint8), message
        return index, torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))), ""

    def close(self) -> None:
        self._slides.close()
