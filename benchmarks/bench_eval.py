"""Throughput of the pFID crop pipeline of ``evaluation``: reading crops, and crops -> features.

Sections (``--only`` takes a comma-separated subset; each is a key of the printed JSON object):

- ``crops_8192``      an 8192^2 JPEG pyramid; N pFID crops (patch 256, fed as read) read a) one by one
                      with ``read_crop``, b) through ``CropDataset`` + DataLoader, c) the whole-image
                      way (anyres-gan: the full image in memory, resized whole to u for every patch),
                      d) one by one under the legacy law (crop side uniform, resized on to 299), the
                      rate before anyres-gan's law was followed.
- ``crops_41344``     the same a) and b) on a 41344^2 pyramid (the paper's output size; ~850 MB, deleted after).
- ``inception_cpu``   images/s of the Inception graph (random weights) on CPU.
- ``end_to_end_cpu``  ``extract_features`` on CPU, next to the reading-only rate.
- ``inception_gpu``, ``end_to_end_gpu``  the same on CUDA, when available.

Every crop-reading method runs in its own fresh process, so its peak RSS (VmHWM) is its own.
Prints one JSON object on stdout; progress goes to stderr. Not a test.
    python benchmarks/bench_eval.py [--quick] [--only crops_8192,inception_cpu] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bench_pyramid import patch_bank  # same IHC texture, so JPEG sizes and decode costs match
from evaluation.crops import CropProtocol, sample_crops
from evaluation.extraction import extract_features
from evaluation.features import load_extractor
from evaluation.inputs import open_images
from evaluation.reading import CropDataset, read_crop
from urcdm.clikit import comma_choices, positive_int, run_script
from urcdm.pyramid import DiskCanvas, write_pyramid
from urcdm.slides import open_slide

SECTIONS = ("crops_8192", "crops_41344", "inception_cpu", "end_to_end_cpu", "inception_gpu", "end_to_end_gpu")
PROTOCOL = CropProtocol(mode="pfid", patch_size=256, image_size=256)
LEGACY_PROTOCOL = CropProtocol(mode="pfid", patch_size=256, image_size=299)  # read at 256, then bicubic to 299
SEED = 0
PATCH, STRIDE = 1024, 896  # the sampler's level-2 grid, as in bench_pyramid


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))
    except (OSError, StopIteration):
        return None


def peak_rss_mb() -> float:
    # Not ru_maxrss: across fork+exec it keeps the parent's peak, so every child would report at
    # least this script's own high-water mark. VmHWM is this process's peak alone (Linux).
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_rss_window() -> float:
    """Reset the peak to the current RSS (Linux clear_refs), so peak_rss_mb() covers what follows."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        pass
    current = _proc_status_mb("VmRSS")
    return current if current is not None else peak_rss_mb()


def rss_figures(baseline: float) -> dict:
    # The baseline is mostly torch (imported by evaluation.reading): ~550 MB resident on Linux.
    peak = peak_rss_mb()
    return {"baseline_rss_mb": round(baseline, 1), "peak_rss_mb": round(peak, 1), "rss_increase_mb": round(peak - baseline, 1)}


def build_pyramid(size: int, out: Path) -> dict:
    """A size^2 tissue-like JPEG q90 pyramid (tile 512), written through a DiskCanvas."""
    bank = patch_bank()
    steps = list(range(0, size - PATCH + 1, STRIDE))
    if steps[-1] != size - PATCH:  # sizes off the 896 grid (--quick) still get fully covered
        steps.append(size - PATCH)
    origins = [(x, y) for y in steps for x in steps]
    np.random.default_rng(SEED).shuffle(origins)
    started = time.perf_counter()
    canvas = DiskCanvas.create(out.with_suffix(".canvas"), size, size)
    try:
        for index, (x, y) in enumerate(origins):
            canvas.write(x, y, bank[index % len(bank)][:PATCH, :PATCH])
        info = write_pyramid(canvas, out, tile=512, quality=90, workdir=out.parent, progress=False)
    finally:
        canvas.delete()
    return {"size": size, "build_s": round(time.perf_counter() - started, 1), "file_mb": round(info.file_bytes / 1e6, 1),
            "levels": len(info.level_dimensions)}


def plan_crops(path: str, n: int) -> np.ndarray:
    images, _ = open_images([Path(path)])
    return sample_crops(images, PROTOCOL, n, SEED)


def legacy_crops(path: str, n: int) -> np.ndarray:
    """Crops under the legacy law: side uniform in [P, S], uniform position, no frame."""
    (image,), _ = open_images([Path(path)])
    rng = np.random.default_rng(SEED)
    sizes = rng.integers(PROTOCOL.patch_size, min(image.width, image.height) + 1, size=n)
    xs, ys = (rng.integers(0, extent - sizes + 1) for extent in (image.width, image.height))
    return np.stack([np.zeros(n), xs, ys, sizes], axis=1).astype(np.float64)


# -- the measured methods; each runs in a child process (see run_child) -------------------------------

def method_single(path: str, n: int, legacy: bool = False, **_) -> dict:
    crops, protocol = (legacy_crops(path, n), LEGACY_PROTOCOL) if legacy else (plan_crops(path, n), PROTOCOL)
    with open_slide(path) as slide:
        read_crop(slide, crops[0], protocol)  # the first read pays for the decoder's tables
        baseline = start_rss_window()
        started = time.perf_counter()
        for crop in crops:
            read_crop(slide, crop, protocol)
        seconds = time.perf_counter() - started
    return {"crops": n, "seconds": round(seconds, 2), "crops_per_s": round(n / seconds, 1), **rss_figures(baseline)}


def method_loader(path: str, n: int, workers: int, batch: int, **_) -> dict:
    crops = plan_crops(path, n)
    dataset = CropDataset([path], crops, PROTOCOL)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, prefetch_factor=4 if workers else None)
    baseline = start_rss_window()
    started = time.perf_counter()  # includes worker start-up, as every real run pays it
    count = sum(len(images) for _, images, _ in loader)
    seconds = time.perf_counter() - started
    # Forked workers share the parent's pages (counted in their RSS too); this is the largest one.
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"crops": count, "workers": workers, "batch": batch, "seconds": round(seconds, 2),
            "crops_per_s": round(count / seconds, 1), **rss_figures(baseline),
            "largest_worker_peak_rss_mb": round(workers_peak, 1)}


def method_whole(path: str, n: int, **_) -> dict:
    """The whole-image pFID crop: resize the WHOLE (square) image to u, then cut the 256^2 patch.

    anyres-gan's ImagePatchDataset decodes the image again for every item, so its per-crop cost is
    load + resize; ``crops_per_s_in_memory`` is the kinder variant that keeps one decoded image.
    """
    crops = plan_crops(path, n)
    baseline = start_rss_window()
    started = time.perf_counter()
    with tifffile.TiffFile(path) as tiff:  # a full decode of level 0, as a plain image loader does
        whole = Image.fromarray(tiff.pages[0].asarray())
    width, height = whole.size
    load_s = time.perf_counter() - started
    patch = PROTOCOL.patch_size
    started = time.perf_counter()
    assert width == height  # the benchmark pyramids are square: the square cut is the whole image
    for _, x, y, size, *_frame in crops:
        scale = patch / size
        resized = whole.resize((round(width * scale), round(height * scale)), Image.Resampling.LANCZOS)
        left, top = round(x * scale), round(y * scale)
        np.asarray(resized.crop((left, top, left + patch, top + patch)))
    seconds = time.perf_counter() - started
    return {"crops": n, "load_s": round(load_s, 2), "seconds": round(seconds, 2),
            "crops_per_s": round(n / (seconds + n * load_s), 3), "crops_per_s_in_memory": round(n / seconds, 3),
            **rss_figures(baseline)}


METHODS = {"single": method_single, "loader": method_loader, "whole": method_whole}


def run_child(method: str, **spec) -> dict:
    """Run one method in a fresh interpreter (this script, --child) and return its JSON line."""
    log(f"  {method}: {spec}")
    command = [sys.executable, __file__, "--child", json.dumps({"method": method, **spec})]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- sections ------------------------------------------------------------------------------------

def crops_section(path: Path, built: dict, args, whole: bool) -> dict:
    result = dict(built)
    result["protocol"] = PROTOCOL.describe()
    result["ours_single"] = run_child("single", path=str(path), n=args.n)
    result["ours_dataloader"] = run_child("loader", path=str(path), n=args.n, workers=2, batch=64)
    result["legacy_law_single"] = run_child("single", path=str(path), n=args.n, legacy=True)
    if whole:
        result["whole_image"] = run_child("whole", path=str(path), n=args.whole_n)
        ours, theirs = result["ours_single"]["crops_per_s"], result["whole_image"]
        result["speedup_single_vs_whole"] = round(ours / theirs["crops_per_s"], 1)
        result["speedup_single_vs_whole_in_memory"] = round(ours / theirs["crops_per_s_in_memory"], 1)
    return result


def inception_rate(device: torch.device, batch: int, batches: int) -> dict:
    extractor = load_extractor("inception-v3-random", device=device)
    size = extractor.input_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(SEED))
    extractor(images)  # warm-up: allocations, cuDNN autotuning, lazy inits
    started = time.perf_counter()
    for _ in range(batches):
        extractor(images)  # returns numpy, so CUDA work has finished when the call returns
    seconds = time.perf_counter() - started
    return {"device": str(device), "batch": batch, "batches": batches, "input": f"uint8 {size}x{size}",
            "images_per_s": round(batch * batches / seconds, 1), "torch_threads": torch.get_num_threads()}


def end_to_end(path: Path, device: torch.device, n: int, workers: int, batch: int) -> dict:
    extractor = load_extractor("inception-v3-random", device=device)
    crops = plan_crops(str(path), n)
    extract_features([str(path)], crops[: batch], PROTOCOL, extractor, batch_size=batch, workers=0)  # warm-up
    started = time.perf_counter()
    features = extract_features([str(path)], crops, PROTOCOL, extractor, batch_size=batch, workers=workers)
    seconds = time.perf_counter() - started
    return {"device": str(device), "crops": len(features), "workers": workers, "batch": batch, "seconds": round(seconds, 2),
            "crops_per_s": round(n / seconds, 1), "torch_threads": torch.get_num_threads()}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=comma_choices(*SECTIONS), default=",".join(SECTIONS), help="comma-separated sections (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes and counts: a smoke run in about a minute")
    parser.add_argument("--size", type=positive_int, default=8192, help="side of the crops_8192 image")
    parser.add_argument("--big-size", type=positive_int, default=41344, help="side of the crops_41344 image")
    parser.add_argument("--n", type=positive_int, default=2000, help="crops per reading method (ours)")
    parser.add_argument("--whole-n", type=positive_int, default=20, help="crops for the (slow) whole-image method")
    parser.add_argument("--e2e-n", type=positive_int, default=256, help="crops for end_to_end_cpu")
    parser.add_argument("--e2e-gpu-n", type=positive_int, default=2048, help="crops for end_to_end_gpu")
    parser.add_argument("--batches", type=positive_int, default=4, help="timed batches for the inception sections")
    parser.add_argument("--workdir", default=None, help="where the temporary pyramids go")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.big_size, args.n, args.whole_n = 2048, 4096, 200, 5
        args.e2e_n, args.e2e_gpu_n, args.batches = 64, 512, 2
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(METHODS[spec.pop("method")](**spec)))
        return

    cuda = torch.cuda.is_available()
    result: dict = {"machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                                "cuda": torch.cuda.get_device_name(0) if cuda else None,
                                "load_average_at_start": round(os.getloadavg()[0], 2)},  # other jobs skew CPU figures
                    "quick": args.quick}
    workdir = Path(tempfile.mkdtemp(prefix="urcdm-bench-eval-", dir=args.workdir))
    try:
        small = workdir / f"tissue{args.size}.tiff"
        if {"crops_8192", "end_to_end_cpu", "end_to_end_gpu"} & set(args.only):
            log(f"writing the {args.size}^2 pyramid")
            built = build_pyramid(args.size, small)

        if "crops_8192" in args.only:
            log("crops_8192")
            result["crops_8192"] = crops_section(small, built, args, whole=True)

        if "crops_41344" in args.only:
            log(f"crops_41344: writing the {args.big_size}^2 pyramid")
            big = workdir / f"tissue{args.big_size}.tiff"
            built_big = build_pyramid(args.big_size, big)
            try:
                result["crops_41344"] = crops_section(big, built_big, args, whole=False)
            finally:
                big.unlink(missing_ok=True)

        if "inception_cpu" in args.only:
            log("inception_cpu")
            result["inception_cpu"] = inception_rate(torch.device("cpu"), 32, args.batches)

        if "end_to_end_cpu" in args.only:
            log("end_to_end_cpu")
            section = end_to_end(small, torch.device("cpu"), args.e2e_n, workers=2, batch=32)
            # Reading alone (1b: DataLoader, 2 workers, no extractor): what the loader could feed the network.
            reading = result.get("crops_8192", {}).get("ours_dataloader") or run_child(
                "loader", path=str(small), n=args.n, workers=2, batch=64)
            section["reading_only_crops_per_s"] = reading["crops_per_s"]
            section["bottleneck"] = "extractor" if section["crops_per_s"] < 0.8 * reading["crops_per_s"] else "reading"
            result["end_to_end_cpu"] = section

        if cuda and "inception_gpu" in args.only:
            log("inception_gpu")
            result["inception_gpu"] = inception_rate(torch.device("cuda"), 128, args.batches)
        if cuda and "end_to_end_gpu" in args.only:
            log("end_to_end_gpu")
            workers = max(1, min(14, (os.cpu_count() or 2) - 2))
            section = end_to_end(small, torch.device("cuda"), args.e2e_gpu_n, workers=workers, batch=128)
            reading = run_child("loader", path=str(small), n=args.e2e_gpu_n, workers=workers, batch=128)
            section["reading_only_crops_per_s"] = reading["crops_per_s"]
            section["bottleneck"] = "extractor" if section["crops_per_s"] < 0.8 * reading["crops_per_s"] else "reading"
            result["end_to_end_gpu"] = section
        if not cuda and {"inception_gpu", "end_to_end_gpu"} & set(args.only):
            result["gpu"] = "skipped: torch.cuda.is_available() is False"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(run_script(main))
