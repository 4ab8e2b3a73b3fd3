"""The console scripts ``urcdm``, ``urcdm-eval`` and ``urcdm-study``.

Each imports its command line under the same Ctrl-C contract its commands run under: a Ctrl-C during
the first second of imports (numpy, torch) is "error: interrupted" and exit 130, as it is a minute
later, not a traceback from inside an import.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import Sequence

from urcdm.clikit import EXIT_INTERRUPTED  # light: the standard library only


def _run(module: str, argv: Sequence[str] | None) -> int:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    status = main(argv)
    _exit_at_once_on_a_late_signal(status)
    return status


def _exit_at_once_on_a_late_signal(status: int) -> None:
    """The command is done and its status decided. A Ctrl-C or SIGTERM while the interpreter shuts down
    (tqdm's and threading's exit hooks) printed a traceback after "wrote ...", or exit 130 for a file
    that was complete; now it ends the process with the status already decided."""
    if threading.current_thread() is not threading.main_thread():
        return

    def leave(signum, frame) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
                pass
        os._exit(status)

    for number in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, leave)


def urcdm(argv: Sequence[str] | None = None) -> int:
    return _run("urcdm.cli", argv)


def urcdm_eval(argv: Sequence[str] | None = None) -> int:
    return _run("evaluation.cli", argv)


def urcdm_study(argv: Sequence[str] | None = None) -> int:
    return _run("study_app.cli", argv)
