"""``urcdm-eval``: pFID-50k, FID-10k, KID and precision/recall on slides of any size.

The metrics land with the evaluation issue; until then the command only describes itself.
"""

from __future__ import annotations

import sys
from typing import Sequence

from urcdm.clikit import ArgumentParser, run_cli


def build_parser() -> ArgumentParser:
    return ArgumentParser(
        prog="urcdm-eval",
        description="Score synthetic slides against real ones: pfid, fid, kid, prc, all, stats, crops. "
        "(Not implemented yet: this release only ships the slide I/O these metrics read through.)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(parser, argv, lambda args: parser.print_help() or 0)


if __name__ == "__main__":
    sys.exit(main())
