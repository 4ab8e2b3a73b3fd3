"""One (level, unet) training job on accelerate, resumable exactly.

    urcdm train --config tiny --level 1 --unet 2 --data SLIDES/ --out runs/l1u2 --steps 2000
    urcdm train --config tiny --level 1 --unet 2 --pairs PAIRS/ --out runs/l1u2 --steps 2000

One unet per process, so the nine models train at once on nine GPUs (as in the paper) or one after
another; ``accelerate launch`` adds data parallelism across GPUs and nodes. Adam, gradient clipping,
EMA, a held-out validation loss, a CSV log, and a checkpoint every K steps written atomically.

Exact resume: the batch of step s is a function of (seed, rank, s) (``urcdm.training.windows.batch_codes``), and
torch's generators are re-seeded from (seed, rank, s) at the start of every step, so the noise, the
timesteps and the random crops of a step do not depend on what ran before. The checkpoint holds the
model, EMA, optimizer and scheduler; with the step, that is the entire state, and a run interrupted
and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from urcdm.config import URCDMConfig
from urcdm.errors import UserError
from urcdm.interrupts import ignore_interrupts, stop_between_steps
from urcdm.models import (
    CHECKPOINT_FORMAT,
    build_imagen,
    check_checkpoint,
    read_checkpoint,
)
from urcdm.training.index import build_index, data_digest, list_slides, slides_mpp
from urcdm.training.pairs import (
    LevelWindows,
    Pairs,
    SlidePairs,
    StepBatches,
    unit_float,
)
from urcdm.training.run_files import (
    CHECKPOINT,
    CONFIG,
    LOG,
    LOG_COLUMNS,
    check_fresh_run_folder,
    check_run_folder,
    keep_log_until,
    save_checkpoint,
    taken_back_unless_checkpointed,
)
from urcdm.training.shards import ShardPairs
from urcdm.training.windows import batch_codes, split_validation

VALIDATION_STREAM = 1 << 20  # a "rank" no real process has: validation draws never collide with training


@dataclass(frozen=True)
class Job:
    config: URCDMConfig
    level: int
    unet: int
    data: Path | None    # the slides, or
    out: Path
    steps: int
    seed: int = 0
    progress: bool = True
    method: str = "urcdm"    # or "outpaint": the baseline's context-free cascade at the last level
    pairs: Path | None = None  # the folder `urcdm prepare-pairs` wrote from them (read instead of the slides)


def step_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step, 0x5EED]).generate_state(1)[0])


def _check_space(out: Path, parameters: int) -> None:
    # model + EMA + two Adam moments in float32, twice over while the new file replaces the old
    needed = parameters * 4 * 4 * 2
    free = shutil.disk_usage(out).free
    if free < needed:
        raise UserError(f"{out}: {free / 1e9:.2f} GB free, a checkpoint needs about {needed / 1e9:.2f} GB")


def _resumable_state(checkpoint_path: Path, job: Job, digest: str) -> dict | None:
    """The checkpoint to resume from, checked against this job; None when there is none yet."""
    if not checkpoint_path.exists():
        return None
    state = read_checkpoint(checkpoint_path)
    check_checkpoint(state, checkpoint_path, job.config, job.level, job.unet, job.method)
    if state["data"] != digest or state["seed"] != job.seed:
        raise UserError(f"{checkpoint_path}: was trained on other slides or with another --seed; "
                        "resume with the same --data and --seed, or choose a new --out")
    return state


def _pairs_of(job: Job, windows: LevelWindows) -> tuple[Pairs, list[str], str, float | None]:
    """The level's pairs, their slides' names, digest and microns per pixel; shards and slides give the same."""
    if job.pairs is not None:
        shards = ShardPairs.open(job.pairs, job.config, job.level, job.method)
        return shards, shards.slides, shards.data_digest, shards.mpp
    paths, positions = build_index(list_slides(job.data), windows.span, job.config.white_threshold)
    return SlidePairs(paths, positions, windows), [Path(p).name for p in paths], data_digest(paths), slides_mpp(paths)


def check_inputs(job: Job) -> None:
    """What ``train`` checks before building a model (the pairs or slides, the run folder), for a caller
    about to run several jobs: each job's inputs are found wanting before the first trains, not after."""
    check_run_folder(job.out, "the run folder (checkpoint.pt, config.yaml, log.csv)")
    _pairs_of(job, LevelWindows.of(job.config, job.level, job.method))
    if not (job.out / CHECKPOINT).exists():
        check_fresh_run_folder(job.out, job.config.to_yaml())


def train(job: Job) -> dict:
    check_run_folder(job.out, "the run folder (checkpoint.pt, config.yaml, log.csv)")
    windows = LevelWindows.of(job.config, job.level, job.method)
    all_pairs, slide_names, digest, mpp = _pairs_of(job, windows)
    held = split_validation(all_pairs.positions, windows.span, job.config.train.validation_fraction, job.seed)
    state = _resumable_state(job.out / CHECKPOINT, job, digest)
    if state is None:
        check_fresh_run_folder(job.out, job.config.to_yaml())  # before anything is written there

    def summary(start: int, step: int, losses: list, seconds: float, world: int) -> dict:
        return {"method": job.method, "level": job.level, "unet": job.unet, "steps": step, "resumed_from": start,
                "trained_steps": step - start, "losses": losses, "seconds": round(seconds, 2),
                "checkpoint": str(job.out / CHECKPOINT), "train_positions": int((~held).sum()),
                "validation_positions": int(held.sum()), "slides": len(slide_names), "world_size": world}

    if state is not None and state["step"] >= job.steps:
        return summary(state["step"], state["step"], [], 0.0, 1)  # finished: a rerun builds no model
    with taken_back_unless_checkpointed(job.out):
        start, step, losses, seconds, world = _fit(job, windows, all_pairs.subset(~held),
                                                   all_pairs.subset(held) if held.any() else None,
                                                   state, digest, slide_names, mpp)
    return summary(start, step, losses, seconds, world)


def _fit(job: Job, windows: LevelWindows, train_pairs: Pairs, val_pairs: Pairs | None, state: dict | None,
         digest: str, slide_names: list[str], mpp: float | None) -> tuple[int, int, list[float], float, int]:
    """Steps from the checkpoint (or 0) to ``job.steps``: (start, last step, losses, seconds, world size)."""
    from accelerate import Accelerator
    from ema_pytorch import EMA

    config, spec = job.config, job.config.unets[job.unet]
    checkpoint_path, log_path = job.out / CHECKPOINT, job.out / LOG
    accelerator = Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    torch.manual_seed(job.seed)  # the same initial weights on every rank and in every rerun
    # Initialised where it trains: a paper unet's 6 GB never pass through the host.
    imagen = build_imagen(config, job.level, only=job.unet, method=job.method, device=accelerator.device)
    unet = imagen.unets[job.unet]
    optimizer = torch.optim.Adam(unet.parameters(), lr=spec.lr, betas=(0.9, 0.99), eps=1e-8)
    warmup = config.train.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    ema = EMA(unet, beta=config.train.ema_beta, update_after_step=config.train.ema_update_after_step,
              update_every=config.train.ema_update_every).to(accelerator.device)

    start = 0
    if state is not None:
        unet.load_state_dict(state["unet_state"])
        ema.load_state_dict(state["ema_state"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start = state["step"]
    else:
        _check_space(job.out, sum(p.numel() for p in unet.parameters()))
        config.save(job.out / CONFIG)
    if accelerator.is_main_process:
        keep_log_until(log_path, start)
    prepared_unet, optimizer = accelerator.prepare(unet, optimizer)

    def checkpoint(step: int) -> None:
        if accelerator.is_main_process:
            save_checkpoint(checkpoint_path, {
                "format": CHECKPOINT_FORMAT, "config": config.to_dict(), "method": job.method, "level": job.level, "unet": job.unet,
                "step": step, "seed": job.seed, "data": digest, "slides": slide_names, "slides_mpp": mpp,
                "unet_state": accelerator.unwrap_model(prepared_unet).state_dict(),
                "ema_state": ema.state_dict(), "ema_unet": ema.ema_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
        accelerator.wait_for_everyone()

    def forward(model, target, context):
        return imagen(unit_float(target.to(accelerator.device)), unet=model, unet_number=job.unet + 1,
                      cond_images=unit_float(context.to(accelerator.device)) if windows.context_span is not None else None)

    def validation_loss() -> float | None:
        if val_pairs is None:
            return None
        losses = []
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            for i in range(config.train.validation_batches):
                torch.manual_seed(step_seed(job.seed, VALIDATION_STREAM, i))
                codes = batch_codes(job.seed, i, spec.batch_size, len(val_pairs.positions), VALIDATION_STREAM)
                target, context = (torch.stack(t) for t in zip(*(val_pairs[c] for c in codes)))
                losses.append(float(forward(ema.ema_model, target, context)))
        return float(np.mean(losses))

    loader = DataLoader(train_pairs, batch_sampler=StepBatches(job.seed, start, job.steps, spec.batch_size,
                                                               len(train_pairs.positions), rank),
                        num_workers=config.train.workers, persistent_workers=False, worker_init_fn=ignore_interrupts)
    bar = tqdm(total=job.steps, initial=start, desc=f"{'outpaint ' if job.method == 'outpaint' else ''}level {job.level} unet {job.unet}", unit="step",
               disable=not (job.progress and accelerator.is_local_main_process))
    losses, started, step = [], time.perf_counter(), start
    # Ctrl-C while the model is built stops at once; once steps run, after the step under way.
    with open(log_path, "a", newline="") as log_handle, stop_between_steps() as stop_requested:
        log = csv.DictWriter(log_handle, fieldnames=LOG_COLUMNS)
        for step, (target, context) in enumerate(loader, start=start + 1):
            torch.manual_seed(step_seed(job.seed, rank, step))
            prepared_unet.train()
            with accelerator.autocast():
                loss = forward(prepared_unet, target, context)
            accelerator.backward(loss)
            grad_norm = accelerator.clip_grad_norm_(prepared_unet.parameters(), config.train.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update()
            value = float(loss.detach())
            if not np.isfinite(value):
                raise UserError(f"the loss became {value} at step {step}; lower the learning rate (unets[{job.unet}].lr)")
            losses.append(value)
            val = validation_loss() if step % config.train.validate_every == 0 or step == job.steps else None
            if accelerator.is_main_process:
                log.writerow({"step": step, "loss": f"{value:.6f}", "lr": f"{scheduler.get_last_lr()[0]:.3g}",
                              "grad_norm": f"{float(grad_norm):.4f}", "val_loss": "" if val is None else f"{val:.6f}",
                              "seconds": f"{time.perf_counter() - started:.2f}"})
                log_handle.flush()
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update(1)
            checkpointed = step % config.train.checkpoint_every == 0 or step == job.steps
            if checkpointed:
                checkpoint(step)
            if stop_requested():
                accelerator.set_trigger()
            if accelerator.check_trigger():  # every rank stops after the same step
                if not checkpointed:
                    checkpoint(step)  # none of the run's work is lost: a rerun resumes from exactly here
                if accelerator.is_main_process:
                    bar.close()
                    print(f"checkpoint at step {step}: run the same command again to resume", file=sys.stderr)
                raise KeyboardInterrupt
    bar.close()
    return start, step, losses, time.perf_counter() - started, world
