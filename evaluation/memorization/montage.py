"""The closest synthetic/training pairs as one PNG, for a person to judge what a number cannot.

Each pair is the synthetic crop (turned/flipped by the transform under which it matched, so both
halves are in the same orientation) beside its nearest training crop, with the similarity, the
transform and where both come from. Pairs above the copy threshold get a red frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evaluation.crops import CropProtocol
from evaluation.reading import read_crop
from urcdm.pyramid import atomic_output
from urcdm.slides import open_slide

FLAGGED_RGB = (220, 30, 30)
UNFLAGGED_RGB = (160, 160, 160)
BACKGROUND_RGB = (255, 255, 255)
TEXT_RGB = (20, 20, 20)
FRAME = 3
GAP = 4
LINE_PX = 14
MAX_TILE_PX = 192  # displayed side of each crop; larger crops are shown reduced


@dataclass
class Pair:
    synthetic: np.ndarray      # (S, S, 3) uint8, already in the matched orientation
    training: np.ndarray       # (S, S, 3) uint8
    caption: Sequence[str]     # short lines under the pair
    flagged: bool


def read_crop_pixels(path: str, crop: np.ndarray, protocol: CropProtocol) -> np.ndarray:
    """One crop-table row as RGB at the protocol's read size (what the extractor was fed, before any resize)."""
    with open_slide(path) as slide:
        return read_crop(slide, crop, protocol.with_image_size(protocol.read_size))


def compose(pairs: Sequence[Pair], title: Sequence[str], columns: int = 2) -> Image.Image:
    """A grid of pairs, ``columns`` pairs to a row, with the ``title`` lines across the top."""
    font = ImageFont.load_default()
    tile = min(MAX_TILE_PX, max((p.synthetic.shape[0] for p in pairs), default=MAX_TILE_PX))
    lines = max((len(p.caption) for p in pairs), default=0)
    cell_w = 2 * (tile + 2 * FRAME) + GAP
    cell_h = tile + 2 * FRAME + lines * LINE_PX + GAP
    columns = max(1, min(columns, len(pairs)))
    rows = -(-len(pairs) // columns) if pairs else 0
    header = (len(title) + 1) * LINE_PX
    canvas = Image.new("RGB", (columns * (cell_w + 2 * GAP), header + rows * (cell_h + GAP) + GAP), BACKGROUND_RGB)
    draw = ImageDraw.Draw(canvas)
    for line, text in enumerate(title):
        draw.text((GAP, GAP + line * LINE_PX), text, fill=TEXT_RGB, font=font)
    for number, pair in enumerate(pairs):
        left = (number % columns) * (cell_w + 2 * GAP) + GAP
        top = header + (number // columns) * (cell_h + GAP)
        frame = FLAGGED_RGB if pair.flagged else UNFLAGGED_RGB
        for offset, pixels in ((0, pair.synthetic), (tile + 2 * FRAME + GAP, pair.training)):
            x = left + offset
            draw.rectangle((x, top, x + tile + 2 * FRAME - 1, top + tile + 2 * FRAME - 1), fill=frame)
            shown = Image.fromarray(np.ascontiguousarray(pixels)).resize((tile, tile), Image.Resampling.LANCZOS)
            canvas.paste(shown, (x + FRAME, top + FRAME))
        for line, text in enumerate(pair.caption):
            draw.text((left, top + tile + 2 * FRAME + line * LINE_PX), text, fill=TEXT_RGB, font=font)
    return canvas


def save_montage(pairs: Sequence[Pair], title: Sequence[str], out_path: Path, overwrite: bool = False) -> Path:
    """Write the montage PNG; the file appears only when complete, and an existing one is kept
    unless ``overwrite``."""
    image = compose(pairs, title)
    with atomic_output(Path(out_path), overwrite) as temp:
        image.save(temp, format="PNG")
    return Path(out_path)
