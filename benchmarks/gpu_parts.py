"""The parts of ``bench_gpu.py`` beyond sampling: training steps/s of a config's unets, and the pFID job
at its real size (crops read per second, features per second, how busy the extractor is kept, and the
wall time of pFID-50k and FID-10k). Each runs on the CPU too, at CI size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from evaluation.commands.options import reading_workers
from evaluation.crops import CropProtocol, sample_crops
from evaluation.extraction import extract_features
from evaluation.features import load_extractor
from evaluation.inputs import open_images
from evaluation.reading import CropDataset
from urcdm.models import build_imagen

# `urcdm-eval pfid`'s defaults: 256-px patches fed as read, the Inception graph resizing them to 299
# itself (as anyres-gan does). FID-10k feeds whole images resized once: another read cost per image,
# the same feature cost; it is projected at the pipeline's rate.
PFID = CropProtocol(mode="pfid", patch_size=256, image_size=256)
EXTRACTOR = "inception-v3-random"  # the standard graph; the real weights are not downloadable here
SEED = 0


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_rates(config, device: torch.device, steps: int, batch_sizes: list[int] | None = None) -> list[dict]:
    """Steps/s and peak GPU memory of each unet of level 1 at its configured batch (or ``batch_sizes``),
    bf16 autocast on CUDA as ``urcdm train`` uses, on random tensors (the data path is ``bench_train``'s)."""
    rows = []
    for unet in range(len(config.unets)):
        spec = config.unets[unet]
        batch = spec.batch_size if batch_sizes is None else batch_sizes[unet]
        imagen = build_imagen(config, 1, only=unet, device=device)
        model = imagen.unets[unet]
        optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
        target = torch.rand(batch, 3, config.patch_px, config.patch_px, device=device)
        context = torch.rand_like(target)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for step in range(steps + 2):
            if step == 2:  # after the warm-up steps: allocations, autotuning
                synchronise(device)
                started = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = imagen(target, unet=model, unet_number=unet + 1, cond_images=context)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        synchronise(device)
        rows.append({"unet": unet, "image_size": spec.image_size, "batch_size": batch,
                     "parameters_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                     "steps_per_s": round(steps / (time.perf_counter() - started), 3),
                     "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
                     if device.type == "cuda" else None})
        del imagen, model, optimizer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


READS_PER_WORKER = 384


def _plan(slides: list[Path], n: int) -> tuple[list[str], np.ndarray]:
    infos, _ = open_images(slides)
    return [info.path for info in infos], sample_crops(infos, PFID, n, seed=SEED)


def read_rate(paths: list[str], crops: np.ndarray, workers: int, batch: int) -> float:
    """Crops read (decoded and resized, as the extractor gets them) per second with ``workers`` processes."""
    dataset = CropDataset(paths, crops, PFID)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, prefetch_factor=4 if workers else None)
    started = time.perf_counter()
    count = sum(len(images) for _, images, _ in loader)
    dataset.close()
    return count / (time.perf_counter() - started)


def feature_rate(extractor, batch: int, batches: int) -> float:
    size = PFID.image_size
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(SEED))
    extractor(images)  # warm-up: cuDNN autotuning, lazy inits
    started = time.perf_counter()
    for _ in range(batches):
        extractor(images)  # returns numpy: the device's work has finished
    return batch * batches / (time.perf_counter() - started)


def pfid_rates(slides: list[Path], device: torch.device, n: int, batch: int, workers: list[int],
               full_n: int | None = None) -> dict:
    """The pFID job on ``device``: read rates per worker count, the extractor's own rate, and the whole
    pipeline (``extract_features``, as ``urcdm-eval pfid`` runs it) with its default readers; its share of
    the extractor's rate is how busy the pipeline keeps the device. pFID-50k (both sides) and FID-10k
    are projected from that rate, or, with ``full_n``, timed through ``urcdm-eval pfid`` itself."""
    paths, crops = _plan(slides, n)
    extractor = load_extractor(EXTRACTOR, device=device)
    # A rate needs a few hundred crops per reader, not all n: one core reads 4096 crops in minutes.
    reads = {str(w): round(read_rate(paths, crops[:READS_PER_WORKER * max(1, w)], w, batch), 1) for w in workers}
    features = feature_rate(extractor, batch, max(2, n // batch))
    extract_features(paths, crops[:batch], PFID, extractor, batch_size=batch, workers=0)  # warm-up
    readers = reading_workers(None, device)  # urcdm-eval's default on this device
    started = time.perf_counter()
    extract_features(paths, crops, PFID, extractor, batch_size=batch, workers=readers)
    pipeline = len(crops) / (time.perf_counter() - started)
    result = {"extractor": EXTRACTOR, "device": str(device), "crops": len(crops), "batch": batch,
              "crops_read_per_s_by_workers": reads, "features_per_s": round(features, 1),
              "pipeline_crops_per_s": round(pipeline, 1), "pipeline_workers": readers,
              "device_busy_share": round(min(1.0, pipeline / features), 3),
              "projected_pfid_50k_both_sides_s": round(2 * 50_000 / pipeline, 1),
              "projected_fid_10k_both_sides_s": round(2 * 10_000 / pipeline, 1)}
    if full_n:
        result["timed_pfid"] = timed_pfid(slides, device, full_n, batch)
    return result


def timed_pfid(slides: list[Path], device: torch.device, n: int, batch: int) -> dict:
    """``urcdm-eval pfid`` end to end at its default readers, ``n`` crops a side (the slides on both
    sides: the cost is the same)."""
    listing = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-gpu-slides-{os.getpid()}.txt"
    listing.write_text("".join(f"{Path(path).resolve()}\n" for path in slides))
    command = [sys.executable, "-m", "evaluation.cli", "pfid", str(listing), str(listing), "--n", str(n),
               "--extractor", EXTRACTOR, "--device", str(device), "--batch-size", str(batch), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    listing.unlink()
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    scores = {k: v for k, v in json.loads(done.stdout).items() if k in ("pfid", "fd")}
    return {"n_per_side": n, "wall_s": round(seconds, 1), **scores}
