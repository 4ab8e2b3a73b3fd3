"""``urcdm sample``: one synthetic slide, from noise to an OpenSlide-readable pyramid."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

from urcdm.clikit import (
    add_output_options,
    non_negative_int,
    positive_float,
    positive_int,
    positive_int_list,
    print_json,
    print_table,
    random_seed,
    shows_progress,
)
from urcdm.config import METHODS, URCDMConfig, load_config, method_levels, run_folder
from urcdm.errors import UserError
from urcdm.sampling import ANCESTRAL, PRECISIONS, SOLVER_NAMES
from urcdm.sampling.schedule import SCHEDULERS


def add_commands(commands) -> None:
    sample = commands.add_parser("sample", help="sample one synthetic slide into a pyramid",
                                 description="Sample a slide: level 0, then every level's patches wave by wave.")
    source = sample.add_mutually_exclusive_group(required=True)
    source.add_argument("--models", type=Path, help="a train-all folder: MODELS/l{L}u{U}/checkpoint.pt, or "
                                                     "MODELS/outpaint-u{U}/checkpoint.pt for --method outpaint (their config is used)")
    source.add_argument("--config", help="paper, tiny or a config YAML: freshly initialised models (a smoke test)")
    sample.add_argument("--out", type=Path, help="the pyramid to write (.tiff); not needed with --dry-run")
    sample.add_argument("--dry-run", action="store_true",
                        help="plan the run and write nothing: per level the unets' parameters and memory at the "
                             "precision, patches, waves, white skip (with --level0), unet evaluations, FLOPs and "
                             "projected hours (timed on CUDA, else from the H200 measurements)")
    sample.add_argument("--seed", type=random_seed, default=0)
    sample.add_argument("--method", choices=METHODS, default="urcdm",
                        help="urcdm (default), or outpaint: the paper's baseline, the last level alone with no context")
    sample.add_argument("--scheduler", choices=SCHEDULERS, help="default: checkerboard (urcdm), raster (outpaint)")
    sample.add_argument("--backend", choices=("diffusion", "upsample"), default="diffusion")
    sample.add_argument("--batch-size", type=batch_size_option, default=None, metavar="auto|N",
                        help="auto (default): patches per model call from the wave and each unet's samples per call "
                             "from free GPU memory (4 patches on the CPU); or N for both. Speed and memory only: "
                             "every patch's noise is its own, so the pixels are the same at any batch size")
    sample.add_argument("--blend", type=non_negative_int, help="px of cross-fade into finished neighbours (default half the overlap)")
    sample.add_argument("--steps", type=positive_int_list, help="sampling steps per unet, e.g. 256,64,64 (default: the config's)")
    sample.add_argument("--solver", choices=SOLVER_NAMES, default=ANCESTRAL,
                        help="ancestral (default): imagen-pytorch's sampler, the paper's; or a diffusers solver over "
                             "the same unets (heun costs 2 unet evaluations a step, the others 1)")
    sample.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                        help="auto (default): bf16 on CUDA, fp32 on the CPU; or fp32, bf16 (CUDA or CPU), fp16 "
                             "(CUDA): the unets under autocast, their weights held in that precision")
    sample.add_argument("--channels-last", action="store_true", help="unets in channels-last memory format (GPUs)")
    sample.add_argument("--compile", nargs="?", const="auto", choices=COMPILE_MODES, metavar="MODE",
                        help="torch.compile each unet once, at a fixed batch shape (minutes of compiling first). "
                             "MODE auto (the default with a bare --compile): CUDA graphs (reduce-overhead) for the "
                             "launch-bound small unets on CUDA, default for the rest; or one of default, "
                             "reduce-overhead, max-autotune for all")
    sample.add_argument("--mpp", type=positive_float,
                        help="microns per pixel of the slide at full resolution, recorded in the pyramid, so `urcdm "
                             "view` and `urcdm-eval --mpp` can set it beside real slides at the same magnification "
                             "(default with --models: the training slides', as train recorded it; else none)")
    sample.add_argument("--level0", type=Path, help="take level 0 from this slide's layout (scaled to the level-0 span)")
    sample.add_argument("--no-white-skip", action="store_true", help="diffuse last-level patches over glass too")
    sample.add_argument("--device", default="auto", help="auto, cpu or cuda (under torchrun: cuda:LOCAL_RANK)")
    sample.add_argument("--overwrite", action="store_true")
    add_output_options(sample)
    sample.set_defaults(handler=cmd_sample, check=check_sample_options)

    seams = commands.add_parser("seams", help="score how visible a sampled slide's stitching is (1.0 = invisible)",
                                description="Mean luminance step across the stitching lines / elsewhere, streamed "
                                            "through the slide in bands of rows.")
    seams.add_argument("slide", type=Path, help="a slide written by `urcdm sample` (its .json manifest gives the grid)")
    seams.add_argument("--config", help="the config it was sampled with, when the manifest is gone")
    seams.add_argument("--band-rows", type=positive_int, default=512, help="rows read at a time (default 512)")
    add_output_options(seams)
    seams.set_defaults(handler=cmd_seams)


COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune")


def batch_size_option(text: str) -> int | None:
    """``auto`` -> None (sized from the wave and the GPU's memory), else a positive integer."""
    if text == "auto":
        return None
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or an integer >= 1, got {text!r}") from None


def _check_run_options(args: argparse.Namespace, config: URCDMConfig) -> None:
    """The ranges that depend on the config: steps per unet, the cross-fade within the overlap."""
    if args.steps is not None:
        unets = config.unets
        if len(args.steps) != len(unets):
            example = ",".join(str(u.timesteps) for u in unets)
            raise UserError(f"--steps: config {config.name!r} has {len(unets)} unets per level, so give {len(unets)} "
                            f"comma-separated values (e.g. {example}), got {len(args.steps)}")
        for index, (unet, steps) in enumerate(zip(unets, args.steps)):
            if steps > unet.timesteps:  # the config's own rule: sample_steps in (0, timesteps]
                raise UserError(f"--steps: unet {index} has {unet.timesteps} timesteps, so its steps must be in "
                                f"1..{unet.timesteps}, got {steps}")
    overlap = config.patch_px - config.stride
    if args.blend is not None and args.blend > overlap:
        raise UserError(f"--blend must be in 0..{overlap} (the overlap of config {config.name!r}, in px), got {args.blend}")


def check_sample_options(args: argparse.Namespace) -> None:
    if args.out is None and not args.dry_run:
        raise UserError("--out: required (the pyramid to write), unless --dry-run")
    if args.backend == "upsample" and args.solver != ANCESTRAL:
        raise UserError("--solver: the upsample backend runs no unets; use it with --backend diffusion")
    config = _config_before_loading(args)
    if config is not None:
        _check_run_options(args, config)


def _config_before_loading(args: argparse.Namespace) -> URCDMConfig | None:
    """The config to check options against before any checkpoint is read (seconds to minutes):
    --config, or the YAML train writes beside each checkpoint; None when that is missing."""
    if args.config is not None:
        return load_config(args.config)
    written = args.models / run_folder(args.method, 0, 0) / "config.yaml"
    try:
        return load_config(written) if written.is_file() else None
    except UserError:
        return None  # the checkpoint's own config decides, below


def _models_config(args: argparse.Namespace) -> URCDMConfig:
    """The config the checkpoints carry (load_cascade checks every one against it)."""
    from urcdm.config import from_dict
    from urcdm.models import read_checkpoint

    if not args.models.is_dir():
        raise UserError(f"{args.models}: is a file; --models names the folder train-all wrote the nine runs into"
                        if args.models.exists() else f"{args.models}: no such models folder")
    return from_dict(read_checkpoint(args.models / run_folder(args.method, 0, 0) / "checkpoint.pt")["config"])


def _with_steps(config: URCDMConfig, steps: tuple[int, ...] | None) -> URCDMConfig:
    if steps is None:
        return config
    return replace(config, unets=tuple(replace(u, sample_steps=v) for u, v in zip(config.unets, steps)))


def _checkpoints(models: Path, config: URCDMConfig, method: str) -> tuple[dict[int, dict[int, Path]], float | None]:
    """Every checkpoint's path, checked, and the microns per pixel of the slide they make: their last
    level's training slides' (recorded by train), at the scale that level's patches read them."""
    from urcdm.models import check_checkpoint, read_checkpoint
    from urcdm.training.pairs import LevelWindows

    found = {level: {unet: models / run_folder(method, level, unet) / "checkpoint.pt" for unet in range(len(config.unets))}
             for level in method_levels(config, method)}
    missing = [str(path) for per_level in found.values() for path in per_level.values() if not path.is_file()]
    if missing:
        raise UserError(f"{models}: {len(missing)} checkpoint(s) missing, e.g. {missing[0]} "
                        f"(train them with `urcdm train-all --method {method}`)")
    # All nine read (mapped: headers, not weights) and checked now, not a truncated or swapped one
    # found when its level starts, hours into the run.
    states = {}
    for level, paths in found.items():
        for index, path in paths.items():
            states[level, index] = read_checkpoint(path)
            check_checkpoint(states[level, index], path, config, level, index, method)
    last = max(found)  # the slide is made at the last level's scale, by its last unet
    slides_mpp = states[last, max(found[last])].get("slides_mpp")  # None from checkpoints before it was recorded
    windows = LevelWindows.of(config, last, method)
    return found, None if slides_mpp is None else slides_mpp * windows.span / windows.patch_px


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from urcdm.models import load_cascade
    from urcdm.pyramid.writer import check_recordable_mpp
    from urcdm.sampling.backends import DiffusionBackend, UpsampleBackend
    from urcdm.sampling.sampler import check_outputs, sample_slide

    if args.dry_run:
        return cmd_plan(args)
    if args.models is not None:
        config = _models_config(args)
    else:
        config = load_config(args.config)
    _check_run_options(args, config)
    check_outputs(args.out, config, args.method, args.overwrite)  # before minutes of model loading, not after
    config = _with_steps(config, args.steps)
    from urcdm.distributed import (
        destroy_process_group,
        init_process_group,
        launched_ranks,
        resolve_device,
    )
    from urcdm.sampling.sampler import level0_from_slide

    ranks = launched_ranks()
    device = str(resolve_device(args.device, ranks.local_rank))  # this rank's GPU under torchrun
    if args.precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16: half precision runs the unets only on CUDA; use bf16 or fp32 on the CPU")
    precision = resolve_precision(args.precision, device)
    if args.compile and args.backend == "diffusion":
        check_compiler(device)  # seconds now, not a compiler traceback after the models are built
    init_process_group(ranks, torch.device(device))
    level0 = level0_from_slide(args.level0, config) if args.level0 is not None else None
    mpp = args.mpp
    backend_options = dict(solver=args.solver, precision=precision, channels_last=args.channels_last,
                           compile=args.compile, batch_size=args.batch_size)
    if args.backend == "upsample":
        backend = UpsampleBackend(config)
    elif args.models is not None:
        checkpoints, trained_mpp = _checkpoints(args.models, config, args.method)
        mpp = args.mpp if args.mpp is not None else trained_mpp
        # Loaded when the level starts and freed before the next: one level's cascade resident at a time.
        backend = DiffusionBackend({level: partial(load_cascade, config, level, paths, method=args.method)
                                    for level, paths in checkpoints.items()}, device, **backend_options)
    else:
        print(f"note: no --models, so the {config.name} cascades are freshly initialised (a smoke test of the "
              "diffusion path: the pixels are noise)", file=sys.stderr)
        backend = DiffusionBackend({level: partial(fresh_cascade, config, level, args.method, args.seed)
                                    for level in method_levels(config, args.method)}, device, **backend_options)
    try:
        check_recordable_mpp(mpp, "--mpp" if args.mpp is not None else "the training slides' scale,")
        with _gpu_memory_as_user_error(device, kept="the finished patches are kept: rerun to resume"):
            manifest = sample_slide(config, backend, args.out, seed=args.seed, scheduler=args.scheduler,
                                    batch_size=args.batch_size, blend=args.blend, overwrite=args.overwrite,
                                    progress=shows_progress(args), white_skip=not args.no_white_skip, level0=level0,
                                    ranks=ranks, method=args.method, mpp=mpp)
    finally:
        destroy_process_group()
    if not ranks.is_main:
        return 0
    if args.json:
        print_json({k: v for k, v in manifest.items() if k != "config"})
    else:
        skipped = manifest["levels"][-1].get("patches_skipped", 0)
        evaluations = manifest["unet_evaluations"]
        print(f"wrote {args.out}: {manifest['pyramid']['width']} x {manifest['pyramid']['height']}, "
              f"{manifest['model_calls']} model calls"
              + (f" ({evaluations} unet evaluations of one patch, {args.solver})" if evaluations is not None else "")
              + f", {skipped} glass patches skipped, in {manifest['seconds']:.1f} s"
              + (" (resumed)" if manifest["resumed"] else ""), file=sys.stderr)
    return 0


@contextmanager
def _gpu_memory_as_user_error(device: str, kept: str):
    """A unet that does not fit even one sample per call (the chunks halve down to one before giving
    up) is a card too small for the config at this precision: one line, not an allocator traceback."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError:
        raise UserError(f"{device} ran out of memory, even at one sample per unet call: the config's unets do not fit "
                        f"this card at this precision; try --precision bf16, a larger GPU or --device cpu "
                        f"({kept})") from None


def cmd_plan(args: argparse.Namespace) -> int:
    """``--dry-run``: the plan of the run (urcdm.sampling.plan); no checkpoint is read, no slide written."""
    from urcdm.distributed import resolve_device
    from urcdm.sampling.plan import plan_run
    from urcdm.sampling.sampler import level0_from_slide

    config = _config_before_loading(args) or _models_config(args)
    _check_run_options(args, config)
    config = _with_steps(config, args.steps)
    device = str(resolve_device(args.device))
    if args.precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16: half precision runs the unets only on CUDA; use bf16 or fp32 on the CPU")
    overview = level0_from_slide(args.level0, config) if args.level0 is not None else None
    scheduler = args.scheduler or ("raster" if args.method == "outpaint" else "checkerboard")
    # Without a GPU the hours are an H200's, so precision auto is what it would be there (bf16), not the CPU's.
    precision = resolve_precision(args.precision, "cuda" if args.precision == "auto" else device)
    with _gpu_memory_as_user_error(device, kept="nothing was written"):
        plan = plan_run(config, args.method, scheduler, args.batch_size, precision,
                        white_skip=not args.no_white_skip, overview=overview, device=device, progress=shows_progress(args))
    if args.json:
        print_json(plan)
    else:
        print(format_plan(plan))
    return 0


def format_plan(plan: dict) -> str:
    gib = 2 ** 30
    where = f"as on an H200 (no GPU on {plan['device']})" if "H200" in plan["projection"] else f"on {plan['device']}"
    lines = [f"plan: config {plan['config']}, {plan['method']}, {plan['scheduler']}, batch {plan['batch_size']}, "
             f"{plan['precision']} {where}; white skip {plan['white_skip']}",
             f"{'level':>5} {'unet':>4} {'px':>5} {'params':>9} {'GiB':>6} {'steps':>5} {'evaluations':>12} "
             f"{'TFLOP':>10} {'ms/sample':>9} {'hours':>7}"]
    for entry in plan["levels"]:
        for row in entry["unets"]:
            lines.append(f"{row['level']:>5} {row['unet']:>4} {row['size']:>5} {row['parameters'] / 1e6:>8.1f}M "
                         f"{row['resident_bytes'] / gib:>6.2f} {row['steps']:>5} {row['evaluations']:>12,} "
                         f"{row['evaluations'] * row['flops_per_evaluation'] / 1e12:>10,.3g} "
                         f"{row['ms_per_sample']:>9.1f} {row['hours']:>7.2f}")
        skip = entry["white_skip_patches"]
        lines.append(f"      level {entry['level']}: {entry['grid']}x{entry['grid']} = {entry['patches']} patches, "
                     f"{entry['waves']} waves, {entry['batches']} batches of up to {entry['batch_size']}"
                     + ("" if skip is None else f", {skip} over glass (white skip)")
                     + f"; {entry['resident_bytes'] / gib:.2f} GiB of weights resident")
    lines.append(f"total: {plan['unet_evaluations']:,} unet evaluations, {plan['flops'] / 1e18:.2f} EFLOP, "
                 f"{plan['hours']:.2f} h ({plan['projection']}); weights resident at most "
                 f"{plan['peak_resident_bytes'] / gib:.2f} GiB (one level; all levels {plan['all_levels_bytes'] / gib:.2f})")
    return "\n".join(lines)


def check_compiler(device: str) -> None:
    """``--compile``: torch.compile a one-line function on the device, so that a machine where torch cannot
    compile (no C++ compiler, no Triton for the GPU, an unsupported Python) is one error line up front."""
    import torch

    def probe(x):
        return torch.nn.functional.silu(x) * 2 + 1

    try:
        compiled = torch.compile(probe)
        compiled(torch.ones(8, device=device))
    except Exception as error:  # inductor raises many kinds; all mean the same thing here
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise UserError(f"--compile: torch cannot compile on {device} here ({type(error).__name__}: {first}); "
                        "run without --compile") from None


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 on CUDA (5-10x faster than fp32 on an H200, ../shared/gpu/README.md), fp32 on the CPU."""
    if precision != "auto":
        return precision
    return "bf16" if str(device).startswith("cuda") else "fp32"


def fresh_cascade(config: URCDMConfig, level: int, method: str, seed: int, device=None, dtype=None):
    """A level's freshly initialised cascade, its weights from the seed and the level alone (so a level
    built on its own, as when a run resumes there, gets the same weights), initialised on ``device``
    (so they differ between a GPU and the CPU) and held in ``dtype``."""
    import torch

    from urcdm.models import build_imagen

    torch.manual_seed(int(np.random.SeedSequence([seed, level]).generate_state(1)[0]))
    return build_imagen(config, level, sampling=True, method=method, device=device, dtype=dtype)


def _sampled_config(slide: Path, config: str | None) -> URCDMConfig:
    from urcdm.config import from_dict

    if config is not None:
        return load_config(config)
    manifest = slide.with_suffix(".json")
    if not manifest.is_file():
        raise UserError(f"{manifest}: no manifest beside the slide; pass --config")
    try:
        return from_dict(json.loads(manifest.read_text())["config"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{manifest}: not a manifest written by `urcdm sample`; pass --config") from None


def cmd_seams(args: argparse.Namespace) -> int:
    from urcdm.sampling.geometry import LevelGrid
    from urcdm.sampling.seams import SeamTally, seam_lines
    from urcdm.slides import open_slide

    config = _sampled_config(args.slide, args.config)
    grid = LevelGrid.of(config, len(config.levels) - 1)
    tally = SeamTally(seam_lines(grid))
    with open_slide(args.slide) as slide:
        if tuple(slide.dimensions) != (grid.size, grid.size):
            raise UserError(f"{args.slide}: is {slide.dimensions[0]}x{slide.dimensions[1]}, but config "
                            f"{config.name!r} stitches {grid.size}x{grid.size}")
        above = None
        for top in range(0, grid.size, args.band_rows):
            above = tally.add(slide.read_region(0, top, grid.size, min(args.band_rows, grid.size - top)), top, above)
    result = {"slide": str(args.slide), "grid": grid.grid, "stride": grid.stride, "patch": grid.patch, **tally.as_dict()}
    if args.json:
        print_json(result)
    else:
        print_table([(key, value) for key, value in result.items()])
    return 0
