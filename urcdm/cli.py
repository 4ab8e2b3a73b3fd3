"""``urcdm``: the model-side command line: slide inspection and conversion, configs, training,
sampling and the deep-zoom viewer."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from urcdm import __version__, sample_cli, train_cli, view_cli
from urcdm.clikit import (
    ArgumentParser,
    add_output_options,
    bounded_int,
    positive_float,
    print_json,
    print_table,
    run_cli,
    shows_progress,
)
from urcdm.errors import UserError
from urcdm.pyramid import SlideSource, check_pyramid_name, check_recordable_mpp, write_pyramid
from urcdm.slides import SlideTissueMask, open_slide


def slide_summary(path: str) -> dict:
    with open_slide(path) as slide:
        width, height = slide.dimensions
        return {
            "path": str(slide.path),
            "reader": type(slide).__name__,
            "vendor": slide.vendor,
            "width": width,
            "height": height,
            "level_count": slide.level_count,
            "level_dimensions": [list(dims) for dims in slide.level_dimensions],
            "level_downsamples": [round(d, 6) for d in slide.level_downsamples],
            "mpp": list(slide.mpp) if slide.mpp else None,
            "tissue_fraction": round(SlideTissueMask.from_slide(slide).fraction, 4),
        }


def cmd_info(args: argparse.Namespace) -> int:
    summary = slide_summary(args.slide)
    if args.json:
        print_json(summary)
        return 0
    mpp = summary["mpp"]
    print_table([
        ("path", summary["path"]),
        ("reader", f"{summary['reader']} ({summary['vendor']})"),
        ("size", f"{summary['width']} x {summary['height']}"),
        ("levels", summary["level_count"]),
        *[(f"  level {i}", f"{w} x {h}  downsample {d:g}")
          for i, ((w, h), d) in enumerate(zip(summary["level_dimensions"], summary["level_downsamples"]))],
        ("mpp", f"{mpp[0]:g} x {mpp[1]:g}" if mpp else "unknown"),
        ("tissue", f"{summary['tissue_fraction']:.1%}"),
    ])
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    source, target = Path(args.input), Path(args.output)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise UserError(f"{target}: output would overwrite the input")
    check_pyramid_name(target)
    started = time.perf_counter()
    with open_slide(source) as slide:
        mpp = args.mpp if args.mpp is not None else (sum(slide.mpp) / 2 if slide.mpp else None)
        check_recordable_mpp(mpp, "--mpp" if args.mpp is not None else f"{source}: its mpp")
        info = write_pyramid(
            SlideSource(slide), target, tile=args.tile, quality=None if args.lossless else (90 if args.quality is None else args.quality),
            mpp=mpp, chroma_subsampling=not args.full_chroma, overwrite=args.overwrite, progress=shows_progress(args),
        )
    result = {**info.as_dict(), "seconds": round(time.perf_counter() - started, 3)}
    if args.json:
        print_json(result)
    else:
        print(f"wrote {target}: {info.width} x {info.height}, {len(info.level_dimensions)} levels, "
              f"{info.compression}, {info.file_bytes / 1e6:.1f} MB in {result['seconds']:.1f} s", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="urcdm", description="Ultra-Resolution Cascaded Diffusion Models: slides, models, sampling.")
    parser.add_argument("--version", action="version", version=f"urcdm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = commands.add_parser("info", help="size, levels, mpp, vendor and tissue fraction of a slide or image")
    info.add_argument("slide", help="any slide OpenSlide reads, a URCDM pyramid, or a plain TIFF/PNG/JPEG")
    add_output_options(info)
    info.set_defaults(handler=cmd_info)

    convert = commands.add_parser("convert", help="convert a slide or image into an OpenSlide-readable pyramidal BigTIFF")
    convert.add_argument("input", help="slide or image to read")
    convert.add_argument("output", help="pyramidal BigTIFF to write (written atomically)")
    convert.add_argument("--tile", type=int, default=512, choices=(256, 512), help="tile size (default 512)")
    compression = convert.add_mutually_exclusive_group()
    # default None, not 90: argparse cannot tell an explicit "--quality 90" from its default.
    compression.add_argument("--quality", type=bounded_int(1, 100), help="JPEG quality 1-100 (default 90)")
    compression.add_argument("--lossless", action="store_true", help="deflate instead of JPEG: pixel-exact")
    convert.add_argument("--full-chroma", action="store_true",
                         help="JPEG colour at full resolution (4:4:4); default 4:2:0 as scanners write")
    convert.add_argument("--mpp", type=positive_float, help="microns per pixel to record (default: the input's, if known)")
    convert.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    add_output_options(convert)
    convert.set_defaults(handler=cmd_convert)
    train_cli.add_commands(commands)
    sample_cli.add_commands(commands)
    view_cli.add_commands(commands)
    return parser


def check_options_against_config(args: argparse.Namespace) -> None:
    """A command's config-dependent ranges (unets per level, steps per unet), checked before it runs."""
    check = getattr(args, "check", None)
    if check is not None:
        check(args)


def _run(args: argparse.Namespace) -> int:
    check_options_against_config(args)
    return args.handler(args)


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
