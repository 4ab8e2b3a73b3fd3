"""``urcdm-study``: run a real-vs-synthetic reader study and score it as the paper's Table 1.

The app lands with the reader-study issue; until then the command only describes itself.
"""

from __future__ import annotations

import sys
from typing import Sequence

from urcdm.clikit import ArgumentParser, run_cli


def build_parser() -> ArgumentParser:
    return ArgumentParser(
        prog="urcdm-study",
        description="Real-vs-synthetic reader study for pathologists (Streamlit), scored as the paper's Table 1. "
        "(Not implemented yet.)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_cli(parser, argv, lambda args: parser.print_help() or 0)


if __name__ == "__main__":
    sys.exit(main())
