"""Write a gigapixel pyramid the way the sampler will, then read it back at random.

1. 46 x 46 overlapping 1024-px patches (stride 896, the paper's level-2 grid) go into a disk canvas
   of 41344 x 41344 in a shuffled order; 2. the canvas streams into a JPEG pyramid; 3. 1,000 random
   512 x 512 reads at level 0 and at downsample 32 through urcdm.slides.

Prints one JSON object: wall times, peak RSS, file size, level count, reads/s. Not a test.
    python benchmarks/bench_pyramid.py [--size 41344] [--workdir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data as skimage_data
from tqdm import tqdm

from urcdm.clikit import bounded_int, positive_float, positive_int, run_script
from urcdm.pyramid import DiskCanvas, write_pyramid
from urcdm.slides import open_slide


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def patch_bank(count: int = 8) -> list[np.ndarray]:
    """1024-px patches of real IHC texture (so JPEG sizes and speeds are realistic)."""
    base = skimage_data.immunohistochemistry()
    mosaic = np.concatenate([np.concatenate([base, base[:, ::-1]], 1), np.concatenate([base[::-1], base[::-1, ::-1]], 1)], 0)
    return [np.ascontiguousarray(np.rot90(mosaic, k) if i < 4 else np.rot90(mosaic[:, ::-1], k)) for i, k in zip(range(count), [0, 1, 2, 3] * 2)]


def random_reads(slide, size: int, downsample: float, count: int, rng) -> float:
    span = int(512 * downsample)
    started = time.perf_counter()
    for _ in range(count):
        x, y = (int(v) for v in rng.integers(0, max(1, size - span), 2))
        slide.read_region(x, y, span, span, out_size=(512, 512))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=positive_int, default=41344)
    parser.add_argument("--patch", type=positive_int, default=1024)
    parser.add_argument("--stride", type=positive_int, default=896)
    parser.add_argument("--quality", type=bounded_int(1, 100), default=90)
    parser.add_argument("--reads", type=positive_int, default=1000)
    parser.add_argument("--workdir", default=None, help="where the canvas and pyramid go (needs ~size^2*3.6 bytes)")
    parser.add_argument("--keep", action="store_true", help="keep the pyramid")
    parser.add_argument("--mpp", type=positive_float, help="microns per pixel to record (default: none)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="urcdm-bench-", dir=args.workdir))
    rng = np.random.default_rng(0)
    bank = patch_bank()
    origins = [(x, y) for y in range(0, args.size - args.patch + 1, args.stride) for x in range(0, args.size - args.patch + 1, args.stride)]
    rng.shuffle(origins)
    result: dict = {"size": args.size, "patches": len(origins), "quality": args.quality}
    try:
        started = time.perf_counter()
        canvas = DiskCanvas.create(workdir / "slide.canvas", args.size, args.size)
        for index, (x, y) in enumerate(tqdm(origins, desc="canvas", unit="patch")):
            canvas.write(x, y, bank[index % len(bank)][: args.patch, : args.patch])
        result["canvas_write_s"] = round(time.perf_counter() - started, 1)
        result["canvas_peak_rss_mb"] = round(peak_rss_mb(), 1)

        started = time.perf_counter()
        info = write_pyramid(canvas, workdir / "slide.tiff", quality=args.quality, workdir=workdir, mpp=args.mpp)
        result["pyramid_write_s"] = round(time.perf_counter() - started, 1)
        result["pyramid_peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["file_bytes"] = info.file_bytes
        result["level_count"] = len(info.level_dimensions)
        result["level_dimensions"] = info.level_dimensions
        canvas.delete()

        with open_slide(workdir / "slide.tiff") as slide:
            result["openslide_levels"] = slide.level_count
            result["reads_per_s_level0_512"] = round(random_reads(slide, args.size, 1, args.reads, rng), 1)
            result["reads_per_s_downsample32_512"] = round(random_reads(slide, args.size, 32, args.reads, rng), 1)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    finally:
        if args.keep:
            result["kept"] = str(workdir / "slide.tiff")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))
