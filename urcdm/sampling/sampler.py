"""The gigapixel sampler: level 0, then each level's patches wave by wave, stitched into a pyramid.

Per patch of level L >= 1: its context is read from level L-1's image (``geometry.patch_context``),
the strips its finished neighbours made are read back from level L's image, and the backend makes the
patch with those strips kept (mask True = keep). Stitching cross-fades a band of ``blend`` pixels
where the patch meets its finished neighbours: the model keeps the neighbours' pixels beyond the
band, regenerates the band, and the result is blended linearly from the neighbour's side to the new
patch's, so a seam has room to fade. Every level >= 1 lives on a disk canvas (bounded memory); the
last is written into an OpenSlide-readable pyramid.

``method="outpaint"`` is the paper's baseline: only the last level, its patches made with no context
from any lower magnification, each outpainted from its finished neighbours (raster order by default).

White skip: a last-level patch whose context is mostly glass (tissue detector) is not diffused but
upsampled from its context. Every patch's seed derives from the slide seed, the level and the patch
index, never from the order of execution or the batch it falls in. Finished patches are journaled
(``state``), so a rerun after ``kill -9``, with any batch size, finishes the slide pixel-identical. Under torchrun each wave's batches are
dealt round-robin to the ranks, rank 0 writes, and the result equals one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from urcdm.config import URCDMConfig, method_levels
from urcdm.distributed import Ranks
from urcdm.errors import OutputExistsError, UserError
from urcdm.pyramid import (
    DiskCanvas,
    check_output_path,
    check_pyramid_name,
    write_pyramid,
)
from urcdm.sampling.backends import Backend, UpsampleBackend
from urcdm.sampling.geometry import LevelGrid, known_mask, patch_context
from urcdm.sampling.schedule import batches, finished_neighbours, waves
from urcdm.sampling.state import NOISE, SampleState
from urcdm.sampling.unet_batches import AUTO_CPU
from urcdm.slides import open_slide, tissue_fraction


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
    """A level on a disk canvas, read with fill outside its bounds (written through ``apply_blocks``)."""

    def __init__(self, canvas: DiskCanvas):
        self.canvas, self.fill = canvas, canvas.fill

    @property
    def size(self) -> int:
        return self.canvas.width

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, self.size), min(y + h, self.size)
        if (x0, y0, x1, y1) == (x, y, x + w, y + h):
            return self.canvas.read(x, y, w, h)
        out = np.empty((h, w, 3), dtype=np.uint8)
        out[:] = self.fill
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self.canvas.read(x0, y0, x1 - x0, y1 - y0)
        return out


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


def is_mostly_glass(context: np.ndarray, white_threshold: float) -> bool:
    # Judged on a 4x reduction: the tissue detector costs 0.3 s on a 1024^2 context, which made the
    # check, not the patches, most of a paper slide's upsample run; glass vs tissue needs no detail.
    if min(context.shape[:2]) >= 512:
        context = np.asarray(Image.fromarray(context).reduce(4))
    return 1.0 - tissue_fraction(context) >= white_threshold


class LevelSampler:
    """One level's patches, wave by wave, batch by batch, with journaling and rank sharding."""

    def __init__(self, config: URCDMConfig, level: int, backend: Backend, seed: int, scheduler: str, batch_size: int,
                 blend: int, white_skip: bool = False, ranks: Ranks = Ranks()):
        self.config, self.level, self.backend, self.seed = config, level, backend, seed
        self.grid = LevelGrid.of(config, level)
        self.schedule = waves(self.grid, scheduler)
        self.before = finished_neighbours(self.grid, self.schedule)
        self.batch_size, self.blend, self.white_skip, self.ranks = batch_size, blend, white_skip, ranks
        self.fill_backend = UpsampleBackend(config)
        self.counts = {"model_calls": 0, "patches_diffused": 0, "patches_skipped": 0}

    def make_batch(self, batch: list, previous, image) -> np.ndarray:
        """The composited (B, P, P, 3) blocks of one batch; reads only, writes nothing."""
        grid = self.grid
        contexts = None if previous is None else np.stack(
            [previous.read(*_rounded_context(self.config, self.level, p)) for p in batch])
        known = np.stack([image.read(*grid.box(p), grid.patch, grid.patch) for p in batch])
        weights = [blend_weights(known_mask(grid, p, self.before[p]), self.blend) for p in batch]
        keep = np.stack([k for k, _ in weights])
        seeds = [patch_seed(self.seed, self.level, grid.index(p)) for p in batch]
        skip = np.zeros(len(batch), bool) if contexts is None or not self.white_skip else \
            np.array([is_mostly_glass(c, self.config.white_threshold) for c in contexts])
        new = np.empty_like(known)
        for chosen, backend in ((~skip, self.backend), (skip, self.fill_backend)):
            if chosen.any():
                idx = np.flatnonzero(chosen)
                new[idx] = backend.generate(self.level, None if contexts is None else contexts[idx], known[idx], keep[idx],
                                            [seeds[i] for i in idx])
        self.counts["model_calls"] += int((~skip).any())
        self.counts["patches_diffused"] += int((~skip).sum())
        self.counts["patches_skipped"] += int(skip.sum())
        blocks = np.empty_like(known)
        for i in range(len(batch)):
            new[i][keep[i]] = known[i][keep[i]]  # kept exactly, whatever the backend returned
            blocks[i] = composite(new[i], known[i], weights[i][1])
        return blocks

    def run(self, previous, image: CanvasImage, state: SampleState, progress: bool = True) -> dict:
        done, started = state.finished(), time.perf_counter()
        bar = tqdm(total=len(self.grid.patches), initial=sum(level == self.level for level, _ in done), desc=f"level {self.level} ({self.grid.grid}x{self.grid.grid})",
                   unit="patch", disable=not (progress and self.ranks.is_main))
        for wave in self.schedule:
            left = [p for p in wave if (self.level, self.grid.index(p)) not in done]
            todo = list(enumerate(batches(left, self.batch_size)))
            # One batch per rank per round, written at once: memory holds world_size batches, not a wave.
            for first in range(0, len(todo), self.ranks.world_size):
                mine = todo[first + self.ranks.rank] if first + self.ranks.rank < len(todo) else None
                result = [] if mine is None else [(mine[0], mine[1], self.make_batch(mine[1], previous, image))]
                for _, patches, blocks in self._gather(result):
                    if self.ranks.is_main:
                        boxes, indices = [self.grid.box(p) for p in patches], [self.grid.index(p) for p in patches]
                        state.write_pending(self.level, indices, boxes, blocks)
                        apply_blocks(image.canvas, boxes, blocks)
                        state.journal(self.level, indices)
                    bar.update(len(patches))
            image = self._synchronise(image)
        if self.ranks.is_main:
            image.canvas.flush()
            state.sync()
        bar.close()
        return {"level": self.level, "grid": self.grid.grid, "size": self.grid.size, "patches": len(self.grid.patches),
                "waves": len(self.schedule), "batch_size": self.batch_size, **self.total_counts(), "seconds": round(time.perf_counter() - started, 2)}

    def _gather(self, results: list) -> list:
        if self.ranks.world_size == 1:
            return results
        import torch.distributed as dist

        pieces: list = [None] * self.ranks.world_size
        dist.all_gather_object(pieces, results)
        return sorted((item for piece in pieces for item in piece), key=lambda item: item[0])

    def total_counts(self) -> dict:
        counts = _every_rank(self.counts, self.ranks)
        return {k: sum(c[k] for c in counts) for k in self.counts}

    def _synchronise(self, image: CanvasImage) -> CanvasImage:
        """After a wave every rank must see rank 0's writes (the canvas caches which chunks exist)."""
        if self.ranks.world_size == 1:
            return image
        import torch.distributed as dist

        dist.barrier()
        if self.ranks.is_main:
            return image
        path = image.canvas.path
        image.canvas.close()
        return CanvasImage(DiskCanvas.open(path))


def apply_blocks(canvas: DiskCanvas, boxes: list[tuple[int, int]], blocks: np.ndarray) -> None:
    for (x, y), block in zip(boxes, blocks):
        canvas.write(x, y, block)


def _rounded_context(config: URCDMConfig, level: int, patch) -> tuple[int, int, int, int]:
    # Contexts start at whole pixels of the previous level: at most half a pixel of that level off centre.
    x, y, side = patch_context(config, level, patch)
    side = int(round(side))
    return int(round(x)), int(round(y)), side, side


def level0_from_slide(path: str | os.PathLike, config: URCDMConfig) -> np.ndarray:
    """A real slide's layout as level 0: its longer side scaled to the level-0 span, centred, glass around."""
    with open_slide(path) as slide:
        width, height = slide.dimensions
        side = max(width, height)
        return slide.read_region((width - side) / 2, (height - side) / 2, side, side,
                                 out_size=(config.patch_px, config.patch_px))


def _level0(config: URCDMConfig, backend: Backend, seed: int, state: SampleState, level0: np.ndarray | None) -> np.ndarray:
    path = state.level0_path()
    if path.exists():
        return np.asarray(Image.open(path).convert("RGB"))
    if level0 is None:
        p = config.patch_px
        level0 = backend.generate(0, None, np.zeros((1, p, p, 3), np.uint8), np.zeros((1, p, p), bool),
                                  [patch_seed(seed, 0, 0)])[0]
    temp = path.with_name(f".{path.stem}.partial.png")
    Image.fromarray(level0).save(temp)
    os.replace(temp, path)
    return level0


def slide_outputs(out: Path, config: URCDMConfig, method: str = "urcdm") -> list[Path]:
    """Every file a run writes: the pyramid, its manifest, and the levels below the last as PNGs."""
    below = range(len(config.levels) - 1) if method != "outpaint" else ()  # outpainting makes the last alone
    return [out, out.with_suffix(".json"), *(out.with_suffix(f".level{level}.png") for level in below)]


def check_outputs(out: Path, config: URCDMConfig, method: str, overwrite: bool) -> None:
    """Refused before any work: a folder as --out, and, without --overwrite, any file the run would
    replace, the side files too (a user's own ``slide.json`` is not ours to overwrite). An interrupted
    run may have written its PNGs before the pyramid: with its work folder there, they are its own."""
    if out.is_dir():
        raise UserError(f"{out}: is a folder; --out names the pyramid file to write, e.g. {out / 'slide.tiff'}")
    check_pyramid_name(out)
    check_output_path(out, overwrite)  # the pyramid itself: not there, its folder there and writable
    if not overwrite and not SampleState.workdir_for(out).is_dir():
        existing = [path for path in slide_outputs(out, config, method)[1:] if path.exists()]
        if existing:
            raise OutputExistsError(f"{existing[0]}: already exists (use --overwrite to replace it)")


def sample_slide(config: URCDMConfig, backend: Backend, out: Path, seed: int = 0, scheduler: str | None = None,
                 batch_size: int | None = None, blend: int | None = None, overwrite: bool = False, progress: bool = True,
                 quality: int | None = 90, white_skip: bool = True, level0: np.ndarray | None = None,
                 ranks: Ranks = Ranks(), method: str = "urcdm", mpp: float | None = None) -> dict:
    """Sample one slide into ``out`` (a pyramid), with ``.level{L}.png`` intermediates and a ``.json``
    manifest beside it. Rerunning after an interruption, with the same settings, resumes (with any
    ``batch_size``). ``batch_size``: patches per model call; None (auto): the backend's
    ``patches_per_call`` for each level (from GPU memory), else ``AUTO_CPU``.
    ``scheduler`` defaults to checkerboard (urcdm) or raster (outpaint, as in the paper). ``mpp``: the
    physical scale recorded in the pyramid (the training slides'), which the pixels do not depend on."""
    out = Path(out)
    method_levels(config, method)  # refuses an unknown method
    outpaint = method == "outpaint"
    scheduler = scheduler or ("raster" if outpaint else "checkerboard")
    if outpaint and level0 is not None:
        raise UserError("--level0 needs the urcdm method: outpainting has no low-magnification levels")
    white_skip = white_skip and not outpaint  # glass is judged on the context, which outpainting lacks
    check_outputs(out, config, method, overwrite)
    overlap = config.patch_px - config.stride
    blend = overlap // 2 if blend is None else blend
    if not 0 <= blend <= overlap:
        raise UserError(f"--blend must be between 0 and the overlap ({overlap} px), got {blend}")
    settings = {"config": config.digest(), "method": method, "seed": seed, "scheduler": scheduler, "backend": backend.name,
                "solver": getattr(backend, "solver", None), "precision": getattr(backend, "precision", None),
                "noise": NOISE, "blend": blend,  # not the batch size: it changes the speed, not the pixels
                # steps change the pixels; the config digest changes with them but does not say so
                "steps": [u.sample_steps or u.timesteps for u in config.unets],
                "white_skip": white_skip,
                "level0": None if level0 is None else hashlib.sha256(level0.tobytes()).hexdigest()[:16]}
    last = len(config.levels) - 1
    stitched = [last] if outpaint else list(range(1, last + 1))  # the levels made patch by patch
    if ranks.is_main:
        _check_disk_space(config, out, stitched, lossless=quality is None)
    state = SampleState.open(out, settings) if ranks.is_main else None
    _barrier(ranks)
    if state is None:
        state = SampleState(SampleState.workdir_for(out))
    resumed, started = state.resumed, time.perf_counter()
    image0, previous, levels = None, None, []
    if not outpaint:
        level0_made_now = level0 is None and not state.level0_path().exists()
        image0 = _level0(config, backend, seed, state, level0) if ranks.is_main else None
        _barrier(ranks)
        previous = ArrayImage(image0 if image0 is not None else np.asarray(Image.open(state.level0_path()).convert("RGB")),
                              tuple(config.fill_rgb))
        levels.append({"level": 0, "grid": 1, "size": config.patch_px, "patches": 1, "waves": 1, "batch_size": 1,
                       "model_calls": int(level0_made_now)})
    pending = state.pending() if ranks.is_main else None
    for level in stitched:
        canvas = _canvas(state, config, level, ranks)
        if pending is not None and pending[0] == level:  # a batch that was being written when the run died
            apply_blocks(canvas, pending[2], pending[3])
            state.journal(level, pending[1])
        image = CanvasImage(canvas)
        per_call = _patches_per_call(backend, level, batch_size, ranks)
        sampler = LevelSampler(config, level, backend, seed, scheduler, per_call, blend,
                               white_skip=white_skip and level == last, ranks=ranks)
        levels.append(sampler.run(previous, image, state, progress))
        previous = CanvasImage(DiskCanvas.open(canvas.path)) if ranks.world_size > 1 else image
    evaluations = _every_rank(getattr(backend, "unet_evaluations", None), ranks)
    evaluations = None if evaluations[0] is None else sum(evaluations)
    if not ranks.is_main:
        _barrier(ranks)
        return {}
    if not outpaint:
        Image.fromarray(image0).save(out.with_suffix(".level0.png"))
    for level in stitched[:-1]:
        with DiskCanvas.open(state.canvas_path(level)) as canvas:
            Image.fromarray(canvas.read(0, 0, canvas.width, canvas.height)).save(out.with_suffix(f".level{level}.png"))
    with DiskCanvas.open(state.canvas_path(last)) as canvas:
        info = write_pyramid(canvas, out, quality=quality, mpp=mpp, overwrite=overwrite, progress=progress)
    manifest = {"out": str(out), "config": config.to_dict(), "method": method, "seed": seed, "scheduler": scheduler,
                "backend": backend.name, "solver": getattr(backend, "solver", None),
                "precision": getattr(backend, "precision", None), "batch_size": batch_size or "auto",
                "blend_px": blend, "mpp": mpp, "white_skip": white_skip, "resumed": resumed, "world_size": ranks.world_size,
                "levels": levels, "model_calls": sum(entry["model_calls"] for entry in levels),
                # every rank's unet forward passes, as model_calls (a resumed run counts only what it redid)
                "unet_evaluations": evaluations,
                "unet_batches": backend.unet_batches() if hasattr(backend, "unet_batches") else None,
                "pyramid": info.as_dict(), "seconds": round(time.perf_counter() - started, 2)}
    out.with_suffix(".json").write_text(json.dumps(manifest, indent=1, default=str))
    state.remove()
    _barrier(ranks)
    return manifest


def _patches_per_call(backend: Backend, level: int, batch_size: int | None, ranks: Ranks) -> int:
    if batch_size is not None:
        return batch_size
    size = backend.patches_per_call(level) if hasattr(backend, "patches_per_call") else AUTO_CPU
    if ranks.world_size > 1:  # every rank must cut the wave the same way: the smallest card decides
        import torch.distributed as dist

        sizes: list = [None] * ranks.world_size
        dist.all_gather_object(sizes, size)
        size = min(sizes)
    return size


def _check_disk_space(config: URCDMConfig, out: Path, stitched: list[int], lossless: bool) -> None:
    """Before any work: a slide that runs out of disk at its last level has wasted hours."""
    raw = [3 * LevelGrid.of(config, level).size ** 2 for level in stitched]
    # every level canvas written in full, then the pyramid: its reduced levels (a third of the last
    # level) and a pessimistic file size, as the pyramid writer estimates them
    needed = sum(raw) + raw[-1] * (0.34 + (0.6 if lossless else 0.15))
    workdir = SampleState.workdir_for(out)
    already = sum(p.stat().st_blocks * 512 for p in workdir.glob("level*.canvas")) if workdir.is_dir() else 0
    free = shutil.disk_usage(out.parent).free
    if needed - already > free:
        raise UserError(f"{out.parent}: not enough disk space to sample this slide (needs about "
                        f"{(needed - already) / 1e9:.1f} GB more, {free / 1e9:.1f} GB free)")


def _canvas(state: SampleState, config: URCDMConfig, level: int, ranks: Ranks) -> DiskCanvas:
    path = state.canvas_path(level)
    if ranks.is_main and not path.exists():
        size = LevelGrid.of(config, level).size
        DiskCanvas.create(path, size, size, fill=tuple(config.fill_rgb)).close()
    _barrier(ranks)
    return DiskCanvas.open(path)


def _every_rank(value, ranks: Ranks) -> list:
    """``value`` as each rank holds it (a collective: every rank must call it)."""
    if ranks.world_size == 1:
        return [value]
    import torch.distributed as dist

    values: list = [None] * ranks.world_size
    dist.all_gather_object(values, value)
    return values


def _barrier(ranks: Ranks) -> None:
    if ranks.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
