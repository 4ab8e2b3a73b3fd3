"""What every urcdm command line shares: ``--debug``, ``--json``, and the error contract.

A ``UserError`` (or an OS error that is the environment's fault: no space, no permission) becomes one
``error:`` line on stderr and exit status 2, never a traceback; ``--debug`` shows the traceback.
Results go to stdout (JSON with ``--json``); progress and messages go to stderr.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import socket
import sys
import traceback
from typing import Callable, Sequence

from urcdm.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # what a shell reports for a command ended by SIGINT
EXIT_TERMINATED = 143  # ... and by SIGTERM
_ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.EDQUOT, errno.ENOENT, errno.EISDIR}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but usage mistakes follow the same one-line ``error:`` contract as everything else."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        """As argparse's, but an unknown option is reported by the subcommand it was given to, so the
        hint is ``urcdm convert --help``, whose options the user needs, not ``urcdm --help``."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self._chosen_subcommand(parsed).error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _chosen_subcommand(self, parsed: argparse.Namespace) -> argparse.ArgumentParser:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):  # argparse has no public accessor for it
                chosen = action.choices.get(getattr(parsed, action.dest, None) or "")
                if chosen is not None:
                    return chosen
        return self


# argparse ``type=`` functions. A bad value then fails while the command line is parsed, before any
# slide is opened or model built, as one line: "error: argument --batch-size: expected an integer
# >= 1, got '0' (see urcdm sample --help)". argparse names the option; the message names the range.

def bounded_int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in {minimum}..{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    return parse


positive_int = bounded_int(1)
non_negative_int = bounded_int(0)
# torch.manual_seed takes 0..2**64-1 and numpy's SeedSequence any non-negative integer; a negative seed
# reached numpy as a traceback.
random_seed = bounded_int(0, 2**64 - 1)


def positive_float(text: str) -> float:
    """A finite number > 0 (``nan`` and ``inf`` parse as floats but mean nothing as a size or rate)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def unit_fraction(text: str) -> float:
    """A number in [0, 1], such as a tissue fraction (``nan`` parses as a float and compares as neither)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def comma_choices(*choices: str) -> Callable[[str], list[str]]:
    """Comma-separated names, each one of ``choices`` (a benchmark's ``--only`` sections)."""
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if not names or unknown:
            raise argparse.ArgumentTypeError(f"expected comma-separated names from {', '.join(choices)}, got {text!r}")
        return names

    return parse


def positive_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers >= 1, e.g. ``256,64,64``; how many is the caller's to check."""
    try:
        values = tuple(int(item) for item in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got {text!r}")
    return values


def add_output_options(parser: argparse.ArgumentParser, json_output: bool = True) -> None:
    if json_output:
        parser.add_argument("--json", action="store_true", help="print machine-readable JSON on stdout")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")


def shows_progress(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, so ``--json`` on stdout stays clean either way: shown on a terminal,
    and left out of a log file or pipe only when the output is JSON for a program to read."""
    return not getattr(args, "json", False) or sys.stderr.isatty()


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
    return run_guarded(lambda: handler(args), debug=getattr(args, "debug", False))


def run_script(main: Callable[[], int | None]) -> int:
    """A script's ``main`` (the benchmarks) under the commands' contract; a child command that failed
    has printed its own error line, and is named in one more."""
    import subprocess

    def main_with_children() -> int | None:
        try:
            return main()
        except subprocess.CalledProcessError as exc:
            command = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd[:4]))
            raise UserError(f"{command} ... failed (exit {exc.returncode})") from None

    return run_guarded(main_with_children, debug=False)


def run_guarded(work: Callable[[], int | None], debug: bool) -> int:
    """Run ``work`` and turn user errors, the environment's OS errors, Ctrl-C and SIGTERM into one
    line and an exit status; ``debug`` keeps the tracebacks of errors."""
    from urcdm.interrupts import Terminated, sigterm_as_interrupt

    try:
        with sigterm_as_interrupt():
            return work() or 0
    except BrokenPipeError:
        # `urcdm train-all --print | head`: the reader left; Python's docs' recipe, so the exit
        # flush does not raise a second time
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except UserError as exc:
        return _report_user_error(f"{exc}", debug)
    except OSError as exc:
        if exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        return _report_user_error(f"{where}{exc.strerror}", debug)
    except KeyboardInterrupt as exc:
        _close_progress_bars()
        terminated = isinstance(exc, Terminated)
        print(f"error: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def _report_user_error(message: str, debug: bool) -> int:
    """One ``error:`` line and exit 2; ``--debug`` adds the traceback above it but keeps the line and
    the status, so a script that checks for 2 behaves the same when someone debugs it."""
    _close_progress_bars()
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USER_ERROR


def _close_progress_bars() -> None:
    """A bar left open by the failure would end the error's line with its carriage return and be
    redrawn after it when collected: closed first, the ``error:`` line starts a line of its own."""
    from tqdm import tqdm

    bars = list(getattr(tqdm, "_instances", ()))  # tqdm's own registry of the bars still open
    for bar in bars:
        bar.close()
    # getattr: a bar whose constructor the signal interrupted is registered without its attributes
    if any(not getattr(bar, "leave", True) for bar in bars) and not sys.stderr.isatty():
        # In a log file a cleared bar (leave=False) ends in "\r   \r", no newline: the error line
        # would not start a line of its own and `grep ^error:` would miss it.
        sys.stderr.write("\n")


def describe_only_main(prog: str, description: str) -> Callable[[Sequence[str] | None], int]:
    """A ``main`` for a command whose functionality has not landed yet: it prints its help."""

    def main(argv: Sequence[str] | None = None) -> int:
        parser = ArgumentParser(prog=prog, description=description)
        return run_cli(parser, argv, lambda args: parser.print_help() or 0)

    return main


def check_port_free(port: int, address: str) -> None:
    """Fail with one line before a server starts, not with a traceback from inside it."""
    bound_socket(port, address).close()


def bound_socket(port: int, address: str) -> socket.socket:
    """A socket bound to ``address:port`` (port 0: a free one), for a server to listen on; an IPv6
    address (``::1``, ``::``) as well as IPv4 and names. A port in use, an address this computer lacks
    or a name that does not resolve is one ``error:`` line."""
    if not 0 <= port <= 65535:  # from a caller that did not bound it
        raise UserError(f"--port {port}: ports are 0..65535")
    try:  # the address's own family: a socket made for IPv4 cannot bind ::1
        family, kind, protocol, _, where = socket.getaddrinfo(address or None, port, type=socket.SOCK_STREAM,
                                                                   flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        raise UserError(f"--address {address}: not a host name or address this computer can resolve") from None
    sock = socket.socket(family, kind, protocol)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(where)
    except OSError as exc:
        sock.close()
        advice = ("choose another --address: this computer has no such address"
                  if exc.errno == errno.EADDRNOTAVAIL else "choose another --port")
        raise UserError(f"cannot listen on {address}:{port} ({exc.strerror}); {advice}") from None
    return sock


# A server listening on every address is opened in a browser on this computer through loopback:
# 0.0.0.0 and :: are addresses to listen on, not to open (from other computers, or on Windows).
_WILDCARD_TO_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def url_host(host: str) -> str:
    """``host`` as a URL or a Host header writes it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def http_url(host: str, port: int) -> str:
    return f"http://{url_host(host)}:{port}/"


def server_urls(address: str, port: int) -> tuple[str, str | None]:
    """The URL a browser on this computer opens, and, for a server listening on every address, the URL
    other computers open (through this computer's name); None for a server on one address."""
    if address in _WILDCARD_TO_LOOPBACK:
        return http_url(_WILDCARD_TO_LOOPBACK[address], port), http_url(socket.gethostname(), port)
    return http_url(address, port), None
