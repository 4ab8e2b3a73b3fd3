"""The memorisation audit (``evaluation.memorization``): does it find planted copies, and how fast is its search?

Sections (``--only`` takes a comma-separated subset; each is a key of the printed JSON object):

- ``search``   exact cosine top-k of ``--search-n`` random queries against as many random training
               features (2048-d, the Inception pool size) on the CPU, torch backend: seconds, and the
               Euclidean self-search that authenticity needs (same size).
- ``planted``  per scenario and extractor: synthetic slides (4 x 4 blocks of 512 px, half of them
               regions of the training slide at random, off-lattice positions, each flipped/turned
               by one of the 8 dihedral transforms, the others regions of held-out tissue), written as
               JPEG-80 pyramids, audited like a user's slides (random crops, dense training lattice,
               dihedral queries, threshold = held-out p99). Every figure is given twice: decided by the
               feature similarity alone (``similarity``) and by the audit's verification (``verified``,
               the correlation search in the candidates' training slides; ``--no-verify`` skips it).
               ``planted_source_in_candidates``: share of planted crops whose source is within half a
               stride of one of the k candidate cells (what similarity alone could hope to find). Figures:
                 planted_found     share of synthetic crops lying wholly inside a planted block that are
                                   flagged (and by offset to the nearest lattice crop, as a share of
                                   the span); planted_blocks_found: blocks with at least one flagged crop
                 honest_flagged    the same for crops wholly inside honest blocks
                 heldout_flagged   crops of a held-out *test* area (real, never in training, not used
                                   for the threshold) that are flagged
                 aligned_found     control: crops of copies placed exactly on the lattice (flips, turns
                                   and JPEG only), to separate the feature space's shift tolerance
                                   from the rest of the audit.
               Scenarios: ``same-slide`` (training: the left half of the TCGA slide; held-out: its right
               half, top for the threshold, bottom for the test and the honest blocks: the same tissue,
               the realistic and hard case) and ``cross-slide`` (training: the TCGA slide; held-out: the
               CMU skin region, top and bottom halves: a different tissue, the easy case).

Prints one JSON object on stdout; progress on stderr. Not a test.
    python benchmarks/bench_memorization.py [--only search,planted] [--extractors resnet18-random,inception-v3-random]
        [--scenarios same-slide,cross-slide] [--spans 128,256] [--patch 128] [--n 200] [--k 5] [--no-verify]
        [--search-n 50000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "plugins"))

from evaluation.features import Extractor, load_extractor  # noqa: E402
from evaluation.inputs import ImageInfo, open_images  # noqa: E402
from evaluation.memorization.calibration import copy_threshold, is_copy  # noqa: E402
from evaluation.memorization.crop_sets import CropSet, sampled_crops, scale_protocols, training_lattices  # noqa: E402
from evaluation.memorization.lattice import lattice_positions, lattice_stride  # noqa: E402
from evaluation.memorization.planting import SourceArea, crop_blocks, plant_slide, source_window, write_area  # noqa: E402
from evaluation.memorization.scale_audit import SearchOptions, search_queries, training_features  # noqa: E402
from evaluation.memorization.search import cosine_topk, euclidean_nearest  # noqa: E402
from evaluation.memorization.verification import verified_matches  # noqa: E402
from urcdm.clikit import comma_choices, non_negative_int, positive_float, positive_int, random_seed, run_script  # noqa: E402
from urcdm.slides import SlideTissueMask, open_slide  # noqa: E402

TCGA, CMU = "tcga-cr-7395-01a-01-ts1.svs", "cmu-1-small-region.svs"
BLOCK, BLOCKS_PER_SIDE, SLIDES = 512, 4, 2
QUANTILE, MIN_TISSUE = 0.99, 0.5
OFFSET_BINS = (0.0, 1 / 32, 1 / 16, 1 / 8, 1 / 4 + 1e-9)  # offset to the nearest lattice crop, as a share of the span


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- search timing ------------------------------------------------------------------------------------

def bench_search(n: int, dim: int, k: int) -> dict:
    rng = np.random.default_rng(0)
    # Non-negative like pooled ReLU features; the values do not change the cost.
    queries = np.abs(rng.standard_normal((n, dim), dtype=np.float32))
    database = np.abs(rng.standard_normal((n, dim), dtype=np.float32))
    log(f"search: {n} x {n} x {dim} cosine top-{k} on {torch.get_num_threads()} threads")
    started = time.perf_counter()
    cosine_topk(queries, database, k, "cpu")
    cosine_seconds = time.perf_counter() - started
    log(f"search: cosine {cosine_seconds:.1f} s; now the Euclidean self-search (authenticity)")
    started = time.perf_counter()
    euclidean_nearest(database, database, "cpu", exclude_self=True)
    self_seconds = time.perf_counter() - started
    return {"queries": n, "database": n, "dim": dim, "k": k, "threads": torch.get_num_threads(),
            "cosine_topk_seconds": round(cosine_seconds, 1), "euclidean_self_search_seconds": round(self_seconds, 1),
            "dihedral_queries_seconds_estimate": round(8 * cosine_seconds, 1),
            "load_average": os.getloadavg(), "peak_rss_mb": round(peak_rss_mb())}


# -- planted copies -----------------------------------------------------------------------------------

def build_scenario(name: str, data: Path, folder: Path, align: int, seed: int) -> dict:
    """Training / held-out / test folders, planted synthetic slides and an aligned-control slide."""
    slides = data / "slides"
    for part in ("training", "heldout", "test", "synthetic", "aligned"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    if name == "same-slide":
        training = write_area(SourceArea(str(slides / TCGA), 0, 0, 2200, 3567), folder / "training" / "tcga-left.tif")
        write_area(SourceArea(str(slides / TCGA), 2243, 0, 2200, 1760), folder / "heldout" / "tcga-right-top.tif")
        test = write_area(SourceArea(str(slides / TCGA), 2243, 1807, 2200, 1760), folder / "test" / "tcga-right-bottom.tif")
    else:
        training = folder / "training" / TCGA
        if not training.exists():
            os.symlink(slides / TCGA, training)
        write_area(SourceArea(str(slides / CMU), 0, 0, 2220, 1460), folder / "heldout" / "cmu-top.tif")
        test = write_area(SourceArea(str(slides / CMU), 0, 1507, 2220, 1460), folder / "test" / "cmu-bottom.tif")
    train_info, test_info = (open_images([p])[0][0] for p in (training, test))
    copy_from = [SourceArea(str(training), 0, 0, train_info.width, train_info.height)]
    honest_from = [SourceArea(str(test), 0, 0, test_info.width, test_info.height)]
    blocks = {}
    for number in range(SLIDES):
        path = folder / "synthetic" / f"planted-{number}.tif"
        blocks[str(path)] = plant_slide(path, BLOCKS_PER_SIDE, BLOCK, copy_from, honest_from, seed=seed + number,
                                        min_tissue=MIN_TISSUE)
    aligned = folder / "aligned" / "aligned.tif"
    blocks[str(aligned)] = plant_slide(aligned, BLOCKS_PER_SIDE, BLOCK, copy_from, honest_from, seed=seed + 99,
                                       planted_share=1.0, min_tissue=MIN_TISSUE, align=align)
    return {"folder": folder, "blocks": blocks, "training": train_info}


def aligned_crops(path: str, blocks, span: int, stride: int, per_block: int, rng) -> CropSet:
    """Crops at lattice steps inside blocks planted at lattice-aligned sources: on the lattice.
    With tissue, as the random crops are (a glass crop has no tissue neighbour to match)."""
    with open_slide(path) as slide:
        mask = SlideTissueMask.from_slide(slide)
    side = BLOCKS_PER_SIDE * BLOCK
    steps = np.arange(0, BLOCK - span + 1, stride)
    rows = []
    for block in blocks:
        candidates = [(block.x + u, block.y + v) for u in steps for v in steps
                      if mask.fraction_in(block.x + u, block.y + v, span, span) >= MIN_TISSUE]
        for index in rng.permutation(len(candidates))[:per_block]:
            rows.append((0, *candidates[index], span, 0, 0, side, side))
    return CropSet([path], np.asarray(rows, dtype=np.float64).reshape(-1, 8))


def lattice_offset(window: tuple[int, int], training: ImageInfo, span: int, stride: int) -> float:
    """Chebyshev distance from a source window to the nearest lattice origin, as a share of the span."""
    xs, ys = lattice_positions(training.width, span, stride), lattice_positions(training.height, span, stride)
    return max(np.abs(xs - window[0]).min(), np.abs(ys - window[1]).min()) / span


def planted_rates(scenario: dict, extractor_name: str, spans: list[int], patch: int, n: int, seed: int,
                  workers: int, stride_fraction: float, verify: bool, k: int = 5) -> dict:
    folder = scenario["folder"]
    extractor = extractor_named(extractor_name)
    image_size = extractor.default_image_size("fixed", patch)
    protocols = scale_protocols(spans, patch, image_size, MIN_TISSUE)
    lattices = training_lattices(str(folder / "training"), protocols, stride_fraction)
    options = SearchOptions(k=k, workers=workers, batch_size=32)
    result = {}
    for protocol, lattice in zip(protocols, lattices):
        span, stride = protocol.span, lattice_stride(protocol.span, stride_fraction)
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as scratch:
            database, mean = training_features(lattice, protocol, extractor, Path(scratch) / "training.npy", options)
            center = mean if options.center else None
            search = lambda crops, side: search_queries(crops, protocol, extractor, database, center, options, side)  # noqa: E731
            synthetic = sampled_crops(str(folder / "synthetic"), "synthetic", protocol, n, seed)
            calibration = sampled_crops(str(folder / "heldout"), "held-out", protocol, n, seed)
            test = sampled_crops(str(folder / "test"), "test", protocol, n, seed)
            aligned_path = str(folder / "aligned" / "aligned.tif")
            aligned = aligned_crops(aligned_path, scenario["blocks"][aligned_path], span, stride, 2, np.random.default_rng(seed))
            found = {name: search(crops, name) for name, crops in
                     (("synthetic", synthetic), ("held-out", calibration), ("test", test), ("aligned", aligned))}
        inside = crop_blocks(synthetic.crops, synthetic.paths, scenario["blocks"])
        planted = np.array([b is not None and b.planted for b in inside])
        honest = np.array([b is not None and not b.planted for b in inside])
        sources = [source_window(b, int(c[1]), int(c[2]), span) if p else None for b, c, p in zip(inside, synthetic.crops, planted)]
        offsets = np.array([lattice_offset(w, scenario["training"], span, stride) if w else np.nan for w in sources])
        candidates = found["synthetic"].neighbours.indices
        # Does the search hand verification a cell within half a stride of the copy's source?
        holds_source = np.array([any(abs(lattice.crops[c, 1] - w[0]) <= stride / 2 and abs(lattice.crops[c, 2] - w[1]) <= stride / 2
                                     for c in row if c >= 0) for row, w in zip(candidates, sources) if w])
        scores = {"similarity": {name: r.nearest_similarity for name, r in found.items()}}
        if verify:
            sets = {"synthetic": synthetic, "held-out": calibration, "test": test, "aligned": aligned}
            scores["verified"] = {name: verified_matches(sets[name], r.neighbours.indices, lattice, label=name)[:, 0]
                                  for name, r in found.items()}
        result[str(span)] = {
            "training_crops": len(lattice), "stride": stride,
            "crops": {"synthetic": len(synthetic), "planted": int(planted.sum()), "honest": int(honest.sum()),
                      "straddling_or_glass": int(len(synthetic) - planted.sum() - honest.sum()), "test": len(test),
                      "aligned": len(aligned)},
            "planted_source_in_candidates": _share(holds_source),
            **{stage: stage_rates(by_name, inside, planted, honest, offsets) for stage, by_name in scores.items()},
            "seconds": round(time.perf_counter() - started, 1),
        }
        log(f"  span {span}: " + json.dumps({stage: {k: v for k, v in result[str(span)][stage].items() if "found" in k or "flagged" in k}
                                             for stage in scores}))
    return result


def stage_rates(scores: dict[str, np.ndarray], inside, planted, honest, offsets) -> dict:
    """Found and flagged shares when ``scores`` (per crop set) decide, thresholded at the held-out quantile."""
    threshold = copy_threshold(scores["held-out"], QUANTILE)
    flagged = {name: is_copy(values, threshold) for name, values in scores.items()}
    by_offset = {}
    for low, high in zip(OFFSET_BINS[:-1], OFFSET_BINS[1:]):
        chosen = planted & (offsets >= low) & (offsets < high)
        by_offset[f"{low:.4g}-{min(high, 0.25):.4g}"] = {"crops": int(chosen.sum()), "found": _share(flagged["synthetic"][chosen])}
    planted_blocks = {id(b) for b, p in zip(inside, planted) if p}
    hit_blocks = {id(b) for b, p, f in zip(inside, planted, flagged["synthetic"]) if p and f}
    synthetic = scores["synthetic"]
    return {"threshold": round(float(threshold), 5),
            "planted_found": _share(flagged["synthetic"][planted]), "planted_found_by_offset": by_offset,
            "planted_blocks_found": round(len(hit_blocks) / max(1, len(planted_blocks)), 4),
            "planted_blocks_seen": len(planted_blocks),
            "honest_flagged": _share(flagged["synthetic"][honest]), "heldout_flagged": _share(flagged["test"]),
            "aligned_found": _share(flagged["aligned"]),
            "median": {"planted": _median(synthetic[planted]), "honest": _median(synthetic[honest]),
                       "heldout": _median(scores["held-out"]), "aligned": _median(scores["aligned"])}}


def _share(values: np.ndarray) -> float | None:
    return round(float(np.mean(values)), 4) if len(values) else None


def _median(values: np.ndarray) -> float | None:
    return round(float(np.median(values)), 4) if len(values) else None


def extractor_named(name: str) -> Extractor:
    if name == "resnet18-random":
        return load_extractor("tiny_extractors:resnet18_random")
    return load_extractor(name)


def bench_planted(args) -> dict:
    data = Path(args.data)
    if not (data / "slides" / TCGA).exists():
        return {"skipped": f"real slides not found under {data} (set URCDM_TEST_DATA)"}
    out = {}
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        for scenario_name in args.scenarios.split(","):
            log(f"planted: building {scenario_name}")
            align = int(np.lcm.reduce([lattice_stride(s, args.stride_fraction) for s in args.spans]))
            scenario = build_scenario(scenario_name, data, Path(work) / scenario_name, align, args.seed)
            out[scenario_name] = {}
            for name in args.extractors.split(","):
                log(f"planted: {scenario_name} with {name}")
                started = time.perf_counter()
                rates = planted_rates(scenario, name, args.spans, args.patch, args.n, args.seed, args.workers,
                                      args.stride_fraction, not args.no_verify, args.k)
                out[scenario_name][name] = {"scales": rates, "seconds": round(time.perf_counter() - started, 1)}
    return {"settings": {"spans": args.spans, "patch": args.patch, "n": args.n, "stride_fraction": args.stride_fraction,
                         "threshold_quantile": QUANTILE, "min_tissue": MIN_TISSUE, "block": BLOCK,
                         "blocks": SLIDES * BLOCKS_PER_SIDE ** 2, "jpeg_quality": 80, "dihedral": "queries x 8"},
            **out, "load_average": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", type=comma_choices("search", "planted"), default="search,planted")
    parser.add_argument("--data", default=os.environ.get("URCDM_TEST_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--extractors", default="resnet18-random",
                        help="comma-separated: resnet18-random (tests' plug-in), inception-v3-random, or module:factory")
    parser.add_argument("--scenarios", default="same-slide,cross-slide")
    parser.add_argument("--spans", type=lambda text: [int(s) for s in text.split(",")], default=[128, 256])
    parser.add_argument("--patch", type=positive_int, default=128)
    parser.add_argument("--n", type=positive_int, default=200, help="random crops per set (synthetic, held-out, test) and scale")
    parser.add_argument("--stride-fraction", type=positive_float, default=0.5, help="training lattice step as a share of the span")
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument("--workers", type=non_negative_int, default=2)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--k", type=positive_int, default=5, help="candidates per crop (nearest training cells)")
    parser.add_argument("--no-verify", action="store_true", help="rates from the feature similarity only")
    parser.add_argument("--search-n", type=positive_int, default=50_000)
    parser.add_argument("--search-dim", type=positive_int, default=2048)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    sections = args.only
    result = {}
    if "search" in sections:
        result["search"] = bench_search(args.search_n, args.search_dim, 5)
    if "planted" in sections:
        result["planted"] = bench_planted(args)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))
