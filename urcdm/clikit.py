"""What every urcdm command line shares: ``--debug``, ``--json``, and the error contract.

A ``UserError`` (or an OS error that is the environment's fault: no space, no permission) becomes one
``error:`` line on stderr and exit status 2, never a traceback; ``--debug`` shows the traceback.
Results go to stdout (JSON with ``--json``); progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import socket
import sys
from typing import Callable, Sequence

from urcdm.errors import UserError

EXIT_USER_ERROR = 2
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT, errno.ENOENT, errno.EISDIR}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage mistakes follow the same one-line ``error:`` contract as everything else."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")


def add_output_options(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    if json_output:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def print_json(payload) -> None:
    json.dump(payload, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_table(rows: Sequence[tuple[str, object]]) -> None:
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def run_cli(parser: argparse.ArgumentParser, argv: Sequence[str] | None, handler: Callable[[argparse.Namespace], int | None]) -> int:
    """Parse, dispatch, and turn user errors into the ``error:`` contract."""
    args = parser.parse_args(argv)
    try:
        return handler(args) or 0
    except UserError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        if getattr(args, "debug", False) or exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


def describe_only_main(prog: str, description: str) -> Callable[[Sequence[str] | None], int]:
    """A ``main`` for a command whose functionality has not landed yet: it prints its help."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = ArgumentParser(prog=prog, description=description)
        return run_cli(parser, argv, lambda args: parser.print_help() or 0)

    return main


def check_port_free(port: int, address: str) -> None:
    """Fail with one line before a server starts, not with a traceback from inside it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise UserError(f"cannot listen on {address}:{port} ({exc.strerror}); choose another --port") from None
