"""``urcdm config|prepare-pairs|train|train-all``: the training side of the ``urcdm`` command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from urcdm.clikit import (
    add_output_options,
    non_negative_int,
    positive_int,
    print_json,
    random_seed,
    shows_progress,
)
from urcdm.config import (
    METHODS,
    PRESETS,
    check_level,
    load_config,
    method_levels,
    run_folder,
)
from urcdm.errors import UserError
from urcdm.training.run_files import check_run_folder


def add_commands(commands) -> None:
    config = commands.add_parser("config", help="print a preset as YAML, to edit into your own config")
    config.add_argument("preset", choices=sorted(PRESETS), help="which preset")
    config.add_argument("-o", "--out", type=Path, help="write it to this file instead")
    config.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    add_output_options(config, json_output=False)
    config.set_defaults(handler=cmd_config)

    prepare = commands.add_parser("prepare-pairs", help="write a level's training pairs once into zarr shards",
                                  description="Read every training pair of a level from the slides once and write it "
                                              "into OUT/level{L}.zarr (lossless, random access), for `urcdm train "
                                              "--pairs OUT`. Run it again after an interruption: it finishes the job.")
    prepare.add_argument("--config", required=True, help="paper, tiny, or a config YAML")
    prepare.add_argument("--data", type=Path, required=True, help="folder of training slides (searched recursively)")
    prepare.add_argument("--out", type=Path, required=True, help="pairs folder: one level{L}.zarr per level")
    prepare.add_argument("--level", type=non_negative_int, action="append",
                         help="level to prepare (repeat for several; default: every level of --method)")
    prepare.add_argument("--method", choices=METHODS, default="urcdm",
                         help="urcdm (default), or outpaint: the baseline's context-free pairs at the last level")
    prepare.add_argument("--workers", type=non_negative_int, default=2, help="processes reading slides (default 2)")
    add_output_options(prepare)
    prepare.set_defaults(handler=cmd_prepare_pairs, check=check_prepare_options)

    train = commands.add_parser("train", help="train one (level, unet) of the cascades",
                                description="Train one (level, unet); resumes from OUT/checkpoint.pt when it exists.")
    _add_job_options(train)
    train.add_argument("--level", type=non_negative_int, help="magnification level (0, 1, 2); --method outpaint: the last (default)")
    train.add_argument("--unet", type=non_negative_int, required=True, help="unet of the level's cascade (0, 1, 2)")
    add_output_options(train)
    train.set_defaults(handler=cmd_train, check=check_train_options)

    train_all = commands.add_parser("train-all", help="the nine jobs: run them one after another, or print them",
                                    description="Run the nine (level, unet) jobs one after another into OUT/l{L}u{U} "
                                                "(--method outpaint: the baseline's three into OUT/outpaint-u{U}), "
                                                "or --print them as commands to run at once, one GPU each.")
    _add_job_options(train_all)
    train_all.add_argument("--print", action="store_true", help="print the nine commands (one GPU each) instead")
    add_output_options(train_all)
    train_all.set_defaults(handler=cmd_train_all)


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="paper, tiny, or a config YAML")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder of training slides (searched recursively)")
    source.add_argument("--pairs", type=Path, help="pairs folder written by `urcdm prepare-pairs` (read instead of slides)")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoint.pt, config.yaml, log.csv")
    parser.add_argument("--steps", type=positive_int, default=None, help="train until this step (default: 20 for tiny, 100000 otherwise)")
    parser.add_argument("--seed", type=random_seed, default=0)
    parser.add_argument("--method", choices=METHODS, default="urcdm",
                        help="urcdm (default), or outpaint: the baseline's context-free cascade at the last level")


def _steps(args, config) -> int:
    steps = args.steps if args.steps is not None else (20 if config.name == "tiny" else 100_000)
    if steps < 1:
        raise UserError("--steps must be at least 1")
    return steps


def cmd_config(args: argparse.Namespace) -> int:
    text = PRESETS[args.preset]().to_yaml()
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from urcdm.pyramid.writer import atomic_output

    with atomic_output(args.out, overwrite=args.overwrite) as temp:  # a full disk leaves no empty config behind
        temp.write_text(text)
    return 0


def _job(config, level: int, unet: int, args, out: Path):
    from urcdm.training.loop import Job

    return Job(config, level, unet, args.data, out, _steps(args, config), args.seed, progress=shows_progress(args),
               method=args.method, pairs=args.pairs)


def _run_job(job) -> dict:
    from urcdm.training.loop import train

    result = train(job)
    losses = result.pop("losses")
    result["first_loss"], result["last_loss"] = (losses[0], losses[-1]) if losses else (None, None)
    return result


def check_prepare_options(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    for level in args.level or ():
        check_level(config, args.method, level, "--level")


def cmd_prepare_pairs(args: argparse.Namespace) -> int:
    from urcdm.training.shards import prepare_pairs

    config = load_config(args.config)
    levels = args.level or method_levels(config, args.method)
    results = [prepare_pairs(config, level, args.method, args.data, args.out, workers=args.workers, progress=shows_progress(args))
               for level in dict.fromkeys(levels)]
    if args.json:
        print_json(results)
    else:
        for r in results:
            rate = f", {r['pairs_per_s']} pairs/s" if r["pairs_per_s"] else ""
            print(f"level {r['level']}: {r['pairs']} pairs ({r['written_now']} written now{rate}), "
                  f"{r['bytes'] / 1e6:.1f} MB in {r['folder']}", file=sys.stderr)
    return 0


def check_train_options(args: argparse.Namespace) -> None:
    """The ranges that depend on the config, checked before any model is built (an --unet past the
    cascade was an IndexError from inside imagen-pytorch)."""
    config = load_config(args.config)
    if args.level is not None:
        check_level(config, args.method, args.level, "--level")
    if args.unet >= len(config.unets):
        raise UserError(f"--unet must be in 0..{len(config.unets) - 1} (config {config.name!r} has "
                        f"{len(config.unets)} unets per level), got {args.unet}")


def cmd_train(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    level = args.level
    if level is None:
        if args.method == "urcdm":
            raise UserError("--level is required (0, 1 or 2)")
        level = method_levels(config, args.method)[-1]
    job = _job(config, level, args.unet, args, args.out)
    result = _run_job(job)
    if result["steps"] > job.steps:  # a checkpoint is never trained backwards; say so rather than nothing
        print(f"note: {job.out} is already at step {result['steps']}, past --steps {job.steps}: nothing was trained",
              file=sys.stderr)
    if args.json:
        print_json(result)
    else:
        print(f"level {level} unet {args.unet}: step {result['steps']} ({result['trained_steps']} trained now, "
              f"resumed from {result['resumed_from']}) in {result['seconds']:.1f} s; checkpoint {result['checkpoint']}",
              file=sys.stderr)
    return 0


def cmd_train_all(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    jobs = [(level, unet) for level in method_levels(config, args.method) for unet in range(len(config.unets))]
    if args.print:
        return _print_train_all(config, jobs, args)
    from urcdm.training.loop import check_inputs

    check_run_folder(args.out, "the folder of the runs, one per unet")
    planned = [_job(config, level, unet, args, args.out / run_folder(args.method, level, unet)) for level, unet in jobs]
    for job in planned:  # every level's pairs and every run folder, before the first job trains
        check_inputs(job)
    results = [_run_job(job) for job in planned]
    if args.json:
        print_json(results)
    else:
        for r in results:
            print(f"level {r['level']} unet {r['unet']}: step {r['steps']}, last loss {r['last_loss']:.4f}, "
                  f"{r['seconds']:.1f} s", file=sys.stderr)
    return 0


def _print_train_all(config, jobs: list[tuple[int, int]], args: argparse.Namespace) -> int:
    """One command per GPU, all at once then ``wait``: a shell script, or with --json a list of jobs."""
    planned = []
    for gpu, (level, unet) in enumerate(jobs):
        command = ["accelerate", "launch", "--num_processes", "1", "-m", "urcdm.cli", "train", "--config", args.config,
                   "--level", str(level), "--unet", str(unet),
                   *(("--pairs", str(args.pairs)) if args.pairs is not None else ("--data", str(args.data))),
                   "--out", str(args.out / run_folder(args.method, level, unet)), "--steps", str(_steps(args, config)),
                   "--seed", str(args.seed), "--method", args.method]
        planned.append({"level": level, "unet": unet, "gpu": gpu, "environment": {"CUDA_VISIBLE_DEVICES": str(gpu)},
                        "command": command, "shell": f"CUDA_VISIBLE_DEVICES={gpu} {shlex.join(command)} &"})
    if args.json:
        print_json(planned)
        return 0
    for job in planned:
        print(job["shell"])
    print("wait")
    return 0
