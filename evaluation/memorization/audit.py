"""The memorisation audit's entry point: does the model reproduce its training slides?

    report = audit("synthetic/", "training/", "heldout/", load_extractor("..."), spans=[6500, 1024],
                   patch_size=256, n_synthetic=10_000, stride_fraction=0.5, out_dir=Path("audit"), device="cuda")

At every scale: a dense lattice of training crops, random synthetic crops and random held-out crops
(real slides not used in training) are embedded; each synthetic and held-out crop is searched for
its nearest training crops (cosine similarity, under all 8 flips/quarter turns); the held-out
crops are verified by correlation against the slides of their candidates (``verification``); the
held-out scores calibrate the copy threshold; the report gives the copy rate, the score and similarity
distributions, authenticity, and a montage of the closest pairs. ``run_audit`` returns the arrays
(for validation); ``audit`` writes the files and returns the JSON-able report.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from evaluation.defaults import AUDIT_MIN_TISSUE as DEFAULT_MIN_TISSUE, AUDIT_PAIRS as DEFAULT_PAIRS
from evaluation.distributed import resolve_device
from evaluation.features import Extractor
from evaluation.inputs import AUDIT_READS_ALL, list_images, open_images
from evaluation.memorization.calibration import DEFAULT_QUANTILE
from evaluation.memorization.crop_sets import check_disjoint, sampled_crops, scale_protocols, training_lattices
from evaluation.memorization.dihedral import TRANSFORMS
from evaluation.memorization.lattice import lattice_stride
from evaluation.memorization.report import jsonable, scale_report, write_montage, write_neighbours_csv
from evaluation.memorization.scale_audit import ScaleAudit, SearchOptions, audit_scale
from evaluation.memorization.search import resolve_backend
from urcdm.errors import OutputExistsError, UserError
from urcdm.pyramid import atomic_output, check_output_path

REPORT_NAME = "memorization.json"
THRESHOLD_RULE = ("copy: the crop's score strictly above the threshold; threshold: the given quantile (numpy "
                  "'higher') of the held-out crops' scores. Score: the best normalised cross-correlation (grey, "
                  "8 flips/turns, any position) with the training slides of the crop's k nearest cells by cosine "
                  "similarity, found coarse and verified fine; with --no-verify, the nearest cosine similarity")
AUTHENTICITY_RULE = ("Alaa et al. 2022 as dgm-eval's authpct: 100 x share of crops whose nearest training crop "
                     "(raw features, Euclidean, as generated) is nearer to another training crop than to them")


def output_names(spans: Sequence[int]) -> list[str]:
    return [REPORT_NAME, *(f"montage-span{s}.png" for s in spans), *(f"neighbours-span{s}.csv" for s in spans)]


def run_audit(synthetic: str, training: str, heldout: str, extractor: Extractor, spans: Sequence[int], patch_size: int,
              n_synthetic: int, stride_fraction: float, device: torch.device | str = "cpu", *,
              n_heldout: int | None = None, threshold_quantile: float = DEFAULT_QUANTILE,
              min_tissue: float = DEFAULT_MIN_TISSUE, seed: int = 0, image_size: int | None = None,
              options: SearchOptions | None = None, workdir: Path | None = None) -> list[ScaleAudit]:
    """The audit's results per scale, with every per-crop array; writes nothing but temporary
    feature files (in ``workdir``, default the system's temporary folder), removed at the end."""
    options = options or SearchOptions()
    options.device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    resolve_backend(options.backend, options.device)
    if options.k < 1:
        raise UserError(f"--k must be at least 1, got {options.k}")
    if n_synthetic < 1 or (n_heldout is not None and n_heldout < 1):
        raise UserError("--n and --n-heldout must be at least 1")
    image_size = image_size or extractor.default_image_size("fixed", patch_size)
    protocols = scale_protocols(spans, patch_size, image_size, min_tissue)
    strides = [lattice_stride(p.span, stride_fraction) for p in protocols]
    if not 0.0 < threshold_quantile < 1.0:
        raise UserError(f"--threshold-quantile must be in (0, 1), got {threshold_quantile:g}")
    check_disjoint(training, heldout)
    for spec, side in ((synthetic, "synthetic"), (heldout, "held-out")):
        open_images(list_images(spec), label=side, skip_hint=AUDIT_READS_ALL)  # an empty folder or a corrupt file: said now, not after the lattice
    lattices = training_lattices(training, protocols, stride_fraction, options.progress)
    results = []
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".memorization-") as scratch:
        for protocol, stride, lattice in zip(protocols, strides, lattices):
            synthetic_crops = sampled_crops(synthetic, "synthetic", protocol, n_synthetic, seed)
            heldout_crops = sampled_crops(heldout, "held-out", protocol, n_heldout or n_synthetic, seed)
            results.append(audit_scale(protocol, stride, lattice, synthetic_crops, heldout_crops, extractor,
                                       threshold_quantile, Path(scratch), options))
    return results


def audit(synthetic: str, training: str, heldout: str, extractor: Extractor, spans: list[int], patch_size: int,
          n_synthetic: int, stride_fraction: float, out_dir: Path, device: torch.device | str = "cpu", *,
          n_heldout: int | None = None, k: int = 5, threshold_quantile: float = DEFAULT_QUANTILE,
          min_tissue: float = DEFAULT_MIN_TISSUE, dihedral: bool = True, seed: int = 0, batch_size: int = 64,
          workers: int = 2, backend: str = "torch", center: bool = False, authenticity: bool = True,
          pairs: int = DEFAULT_PAIRS, image_size: int | None = None, overwrite: bool = False, verify: bool = True,
          progress: bool = True) -> dict:
    """Run the audit and write ``memorization.json``, ``montage-span{S}.png`` and
    ``neighbours-span{S}.csv`` per scale into ``out_dir``, which must be new or empty unless
    ``overwrite`` (then the audit's own files there are replaced and nothing else is touched); refused
    before any work. Returns the report (JSON-able)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    if not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):  # as scales and stats refuse theirs
        existing = [name for name in output_names(spans) if (out_dir / name).exists()]
        raise OutputExistsError(f"{out_dir / existing[0] if existing else out_dir}: already exists"
                                f"{'' if existing else ' and is not empty'} (use --overwrite to write the audit into it)")
    # Writable, tried now rather than after the search: the folder if it is there, else its parent.
    if out_dir.is_dir():
        check_output_path(out_dir / REPORT_NAME, overwrite=True)
    else:
        check_output_path(out_dir, overwrite=False, directory=True)
    if pairs < 0:
        raise UserError(f"--pairs must be 0 or more, got {pairs}")
    options = SearchOptions(k=k, backend=backend, dihedral=dihedral, center=center, batch_size=batch_size,
                            workers=workers, authenticity=authenticity, verify=verify, progress=progress)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)  # also holds the temporary training features: the user's chosen disk
    staging = None
    try:
        results = run_audit(synthetic, training, heldout, extractor, spans, patch_size, n_synthetic, stride_fraction,
                            device, n_heldout=n_heldout, threshold_quantile=threshold_quantile, min_tissue=min_tissue,
                            seed=seed, image_size=image_size, options=options, workdir=out_dir)
        # The files are written into a staging folder and moved into place together at the end: a
        # montage that fails leaves neither a lone CSV nor a half-replaced earlier audit.
        staging = Path(tempfile.mkdtemp(prefix=".audit-", dir=out_dir))
        scales = []
        for result in results:
            entry = scale_report(result, pairs)
            entry["files"] = {"neighbours": write_neighbours_csv(result, staging / f"neighbours-span{result.span}.csv").name}
            if pairs:
                entry["files"]["montage"] = write_montage(result, pairs, staging / f"montage-span{result.span}.png").name
            scales.append(entry)
        report = jsonable({
            "synthetic": synthetic, "training": training, "heldout": heldout,
            "extractor": extractor.id,
            "search": {"backend": resolve_backend(backend, options.device), "device": str(options.device), "k": k,
                       "metric": "cosine similarity" + (" about the training features' mean" if center else "")},
            "dihedral": f"queries under all {TRANSFORMS} flips/quarter turns, best similarity kept" if dihedral else "off",
            "stride_fraction": stride_fraction, "min_tissue": min_tissue, "seed": seed,
            "threshold_rule": THRESHOLD_RULE, "authenticity_rule": AUTHENTICITY_RULE,
            "scales": scales,
            "seconds": round(time.perf_counter() - started, 3),
        })
        with atomic_output(staging / REPORT_NAME, True) as temp:
            temp.write_text(json.dumps(report, indent=2) + "\n")
        for written in sorted(staging.iterdir(), key=lambda path: path.name == REPORT_NAME):  # the report last
            os.replace(written, out_dir / written.name)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed audit leaves no empty folder behind
    return report
