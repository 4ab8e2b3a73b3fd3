"""The gigapixel sampler: level 0, then each level's patches wave by wave, stitched into a pyramid.

Per patch of level L >= 1: its context is read from level L-1's image (``geometry.patch_context``),
the strips its finished neighbours made are read back from level L's image, and the backend makes the
patch with those strips kept (mask True = keep). Stitching cross-fades a band of ``blend`` pixels
where the patch meets its finished neighbours: the model keeps the neighbours' pixels beyond the
band, regenerates the band, and the result is blended linearly from the neighbour's side to the new
patch's, so a seam has room to fade. Levels are held in memory up to the second-to-last (6400^2 for
the paper: 123 MB); the last is a disk-backed canvas written into an OpenSlide-readable pyramid.

Every patch's seed derives from the slide seed, the level and the patch index, never from the order
of execution.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from urcdm.backends import Backend
from urcdm.config import URCDMConfig
from urcdm.errors import OutputExistsError, UserError
from urcdm.geometry import LevelGrid, known_mask, patch_context
from urcdm.pyramid import DiskCanvas, write_pyramid
from urcdm.schedule import batches, finished_neighbours, waves


def patch_seed(seed: int, level: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, level, index]).generate_state(1)[0])


class ArrayImage:
    """A level held in memory, read with fill outside its bounds."""

    def __init__(self, pixels: np.ndarray, fill: tuple[int, ...]):
        self.pixels, self.fill = pixels, fill

    @property
    def size(self) -> int:
        return self.pixels.shape[0]

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.empty((h, w, 3), dtype=np.uint8)
        out[:] = self.fill
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.size), min(y + h, self.size)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self.pixels[y0:y1, x0:x1]
        return out

    def write(self, x: int, y: int, pixels: np.ndarray) -> None:
        self.pixels[y:y + pixels.shape[0], x:x + pixels.shape[1]] = pixels


class CanvasImage:
    """The last level, on disk (patches always lie inside it, so no fill is needed)."""

    def __init__(self, canvas: DiskCanvas):
        self.canvas = canvas

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.canvas.read(x, y, w, h)

    def write(self, x: int, y: int, pixels: np.ndarray) -> None:
        self.canvas.write(x, y, pixels)


def blend_weights(mask: np.ndarray, blend: int) -> tuple[np.ndarray, np.ndarray]:
    """(keep, alpha): the pixels the model must keep, and the new patch's weight in the composite.

    ``alpha`` is 1 on new ground and falls linearly to 0 over ``blend`` pixels into the known strips;
    ``keep`` is the known region beyond that band (all of it when ``blend`` is 0).
    """
    if not mask.any():
        return mask, np.ones(mask.shape, dtype=np.float32)
    depth = ndimage.distance_transform_cdt(mask, metric="chessboard").astype(np.float32)
    if blend <= 0:
        return mask, (~mask).astype(np.float32)
    return depth > blend, np.clip(1.0 - depth / blend, 0.0, 1.0).astype(np.float32)


def composite(new: np.ndarray, known: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    mixed = new.astype(np.float32) * alpha[..., None] + known.astype(np.float32) * (1 - alpha[..., None])
    return np.round(mixed).astype(np.uint8)


def sample_level(config: URCDMConfig, level: int, previous, image, backend: Backend, seed: int, scheduler: str,
                 batch_size: int, blend: int, progress: bool = True) -> dict:
    """Fill level ``level``'s image patch by patch; returns the level's entry for the manifest."""
    grid = LevelGrid.of(config, level)
    schedule = waves(grid, scheduler)
    before = finished_neighbours(grid, schedule)
    calls, started = 0, time.perf_counter()
    bar = tqdm(total=len(grid.patches), desc=f"level {level} ({grid.grid}x{grid.grid})", unit="patch", disable=not progress)
    for wave in schedule:
        for batch in batches(wave, batch_size):
            contexts = np.stack([previous.read(*_rounded_context(config, level, p)) for p in batch])
            known = np.stack([image.read(*grid.box(p), grid.patch, grid.patch) for p in batch])
            weights = [blend_weights(known_mask(grid, p, before[p]), blend) for p in batch]
            keep = np.stack([k for k, _ in weights])
            new = backend.generate(level, contexts, known, keep, [patch_seed(seed, level, grid.index(p)) for p in batch])
            calls += 1
            for i, patch in enumerate(batch):
                new[i][keep[i]] = known[i][keep[i]]  # kept exactly, whatever the backend returned
                image.write(*grid.box(patch), composite(new[i], known[i], weights[i][1]))
            bar.update(len(batch))
    bar.close()
    return {"level": level, "grid": grid.grid, "size": grid.size, "patches": len(grid.patches), "waves": len(schedule),
            "model_calls": calls, "seconds": round(time.perf_counter() - started, 2)}


def _rounded_context(config: URCDMConfig, level: int, patch) -> tuple[int, int, int, int]:
    # Contexts start at whole pixels of the previous level: at most half a pixel of that level off centre.
    x, y, side = patch_context(config, level, patch)
    side = int(round(side))
    return int(round(x)), int(round(y)), side, side


def sample_slide(config: URCDMConfig, backend: Backend, out: Path, seed: int = 0, scheduler: str = "checkerboard",
                 batch_size: int = 4, blend: int | None = None, overwrite: bool = False, progress: bool = True,
                 quality: int | None = 90) -> dict:
    """Sample one slide into ``out`` (a pyramid), with ``out``'s stem + ``.level{L}.png`` intermediates and
    ``.json`` manifest beside it."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: already exists (use --overwrite to replace it)")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such directory")
    overlap = config.patch_px - config.stride
    blend = overlap // 2 if blend is None else blend
    if not 0 <= blend <= overlap:
        raise UserError(f"--blend must be between 0 and the overlap ({overlap} px), got {blend}")
    started = time.perf_counter()
    fill = tuple(config.fill_rgb)
    level0 = backend.generate(0, None, np.zeros((1, config.patch_px, config.patch_px, 3), np.uint8),
                              np.zeros((1, config.patch_px, config.patch_px), bool), [patch_seed(seed, 0, 0)])[0]
    previous = ArrayImage(level0, fill)
    Image.fromarray(level0).save(out.with_suffix(".level0.png"))
    levels = [{"level": 0, "grid": 1, "size": config.patch_px, "patches": 1, "waves": 1, "model_calls": 1}]
    last = len(config.levels) - 1
    canvas_path, canvas = out.with_name(f".{out.name}.canvas"), None
    try:
        for level in range(1, last + 1):
            size = LevelGrid.of(config, level).size
            if level < last:
                image = ArrayImage(np.zeros((size, size, 3), np.uint8), fill)
            else:
                canvas = DiskCanvas.create(canvas_path, size, size, fill=fill)
                image = CanvasImage(canvas)
            levels.append(sample_level(config, level, previous, image, backend, seed, scheduler, batch_size, blend, progress))
            if level < last:
                Image.fromarray(image.pixels).save(out.with_suffix(f".level{level}.png"))
                previous = image
        info = write_pyramid(canvas, out, quality=quality, overwrite=overwrite, progress=progress)
    finally:
        if canvas is not None:
            canvas.delete()
    manifest = {"out": str(out), "config": config.to_dict(), "seed": seed, "scheduler": scheduler, "backend": backend.name,
                "batch_size": batch_size, "blend_px": blend, "levels": levels,
                "model_calls": sum(entry["model_calls"] for entry in levels),
                "pyramid": info.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=1, default=str))
    return manifest
