"""pFID under anyres-gan's crop-scale law, under the legacy law, and by an independent reference.

Real H&E regions (square, cut from the real slides in ``../shared/data``) against the same regions
blurred (Gaussian, sigma 1.5 px) and stain-shifted (RGB +25, -15, +10), with two extractors: the
texture features of the tests (``detail_energy``) and a random-weight ResNet-18 (a deep network;
no pretrained weights can be downloaded here). For every seed, pFID three ways:

- ``ours``       ``urcdm-eval``'s pipeline (crops planned by ``evaluation.crops``, read through the
                 slide layer);
- ``reference``  ``tests/plugins/anyres_reference.py``: anyres-gan's sampler re-implemented from its
                 description with Python's ``random`` and PIL, every image read whole;
- ``legacy``     the law urcdm-eval used before (crop side uniform, images with replacement).

Prints one JSON object on stdout (per extractor and fake: mean, spread and values over seeds, and
the ratios); progress on stderr. Not a test.
    python benchmarks/bench_pfid_law.py [--n 500] [--seeds 5] [--patch 128] [--side 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "plugins"))

from anyres_reference import anyres_patches, legacy_patches, load_images  # noqa: E402
from evaluation.crops import CropProtocol  # noqa: E402
from evaluation.features import Extractor  # noqa: E402
from evaluation.metrics import frechet_distance  # noqa: E402
from evaluation.pipeline import RunOptions, side_statistics  # noqa: E402
from tiny_extractors import detail_energy, resnet18_random  # noqa: E402
from urcdm.clikit import non_negative_int, positive_int, run_script  # noqa: E402
from urcdm.slides import open_slide, tissue_fraction  # noqa: E402

STAIN_SHIFT = np.array([25, -15, 10], dtype=np.int16)
FAKES = ("blurred", "stain-shift")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tissue_regions(data: Path, side: int, count: int) -> list[np.ndarray]:
    """The ``count`` most tissue-covered side x side regions on a half-side lattice of the real slides."""
    candidates = []
    for name in ("tcga-cr-7395-01a-01-ts1.svs", "cmu-1-small-region.svs"):
        with open_slide(data / "slides" / name) as slide:
            width, height = slide.dimensions
            for y in range(0, height - side + 1, side // 2):
                for x in range(0, width - side + 1, side // 2):
                    thumb = slide.read_region(x, y, side, side, out_size=(128, 128))
                    candidates.append((tissue_fraction(thumb), name, x, y))
    chosen = sorted(candidates, reverse=True)[:count]
    regions = []
    for _, name, x, y in chosen:
        with open_slide(data / "slides" / name) as slide:
            regions.append(slide.read_region(x, y, side, side))
    return regions


def write_sets(regions: list[np.ndarray], root: Path) -> dict[str, Path]:
    folders = {name: root / name for name in ("real", *FAKES)}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for index, pixels in enumerate(regions):
        image = Image.fromarray(pixels)
        image.save(folders["real"] / f"{index}.png")
        image.filter(ImageFilter.GaussianBlur(1.5)).save(folders["blurred"] / f"{index}.png")
        shifted = np.clip(pixels.astype(np.int16) + STAIN_SHIFT, 0, 255).astype(np.uint8)
        Image.fromarray(shifted).save(folders["stain-shift"] / f"{index}.png")
    return folders


def features_of(patches, extractor, batch: int = 64) -> np.ndarray:
    chunks, pending = [], []
    for patch in patches:
        pending.append(torch.from_numpy(np.asarray(patch).transpose(2, 0, 1).copy()))
        if len(pending) == batch:
            chunks.append(extractor(torch.stack(pending)).numpy())
            pending = []
    if pending:
        chunks.append(extractor(torch.stack(pending)).numpy())
    return np.concatenate(chunks).astype(np.float64)


def stats_of(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return features.mean(axis=0), np.cov(features, rowvar=False)


def side_stats(law: str, folder: Path, seed: int, fn, args) -> tuple[np.ndarray, np.ndarray]:
    if law == "ours":
        extractor = Extractor(fn.extractor_id, fn, args.patch, False, torch.device("cpu"))
        options = RunOptions(CropProtocol(mode="pfid", patch_size=args.patch, image_size=args.patch), n=args.n,
                             seed=seed, workers=args.workers)
        stats = side_statistics(str(folder), folder.name, extractor, options)
        return stats.mean, stats.cov
    sampler = anyres_patches if law == "reference" else legacy_patches
    return stats_of(features_of(sampler(load_images(folder), args.patch, args.n, seed), fn))


def summary(values: list[float]) -> dict:
    # one seed has no spread: null in the JSON, not NaN (which strict JSON parsers refuse)
    sd = round(float(np.std(values, ddof=1)), 6) if len(values) > 1 else None
    return {"mean": round(float(np.mean(values)), 6), "sd": sd,
            "values": [round(v, 6) for v in values]}


def run(args) -> dict:
    data = Path(args.data)
    if not (data / "slides").is_dir():
        raise SystemExit(f"error: real slides not found in {data} (set --data or URCDM_TEST_DATA)")
    result = {"patch": args.patch, "region_side": args.side, "regions": args.regions, "n": args.n,
              "seeds": args.seeds, "protocol": f"patch{args.patch}-min{args.patch}max0"}
    with tempfile.TemporaryDirectory() as temp:
        folders = write_sets(tissue_regions(data, args.side, args.regions), Path(temp))
        for name, factory in (("detail_energy", detail_energy), ("resnet18_random", resnet18_random)):
            fn, started = factory(), time.perf_counter()
            per_fake = {fake: {law: [] for law in ("ours", "reference", "legacy")} for fake in FAKES}
            for law in ("ours", "reference", "legacy"):
                for seed in range(args.seeds):
                    log(f"{name}: {law}, seed {seed}")
                    real = side_stats(law, folders["real"], seed, fn, args)
                    for fake in FAKES:
                        other = side_stats(law, folders[fake], seed + 1000, fn, args)
                        per_fake[fake][law].append(frechet_distance(*real, *other))
            result[name] = {"seconds": round(time.perf_counter() - started, 1)}
            for fake, laws in per_fake.items():
                row = {law: summary(values) for law, values in laws.items()}
                row["ours_over_reference"] = round(row["ours"]["mean"] / row["reference"]["mean"], 3)
                row["reference_over_legacy"] = round(row["reference"]["mean"] / row["legacy"]["mean"], 3)
                result[name][fake] = row
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("URCDM_TEST_DATA", str(ROOT.parent / "shared" / "data")),
                        help="the real test data folder (default: $URCDM_TEST_DATA, else ../shared/data)")
    parser.add_argument("--n", type=positive_int, default=500, help="patches per side and seed")
    parser.add_argument("--seeds", type=positive_int, default=5)
    parser.add_argument("--patch", type=positive_int, default=128, help="P")
    parser.add_argument("--side", type=positive_int, default=1024, help="side of the square real regions")
    parser.add_argument("--regions", type=positive_int, default=6)
    parser.add_argument("--workers", type=non_negative_int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    print(json.dumps(run(args), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
