"""The console scripts ``urcdm``, ``urcdm-eval`` and ``urcdm-study``.

Each imports its command line under the same Ctrl-C contract its commands run under: a Ctrl-C during
the first second of imports (numpy, torch) is "error: interrupted" and exit 130, as it is a minute
later, not a traceback from inside an import.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

from urcdm.clikit import EXIT_INTERRUPTED  # light: the standard library only


def _run(module: str, argv: Sequence[str] | None) -> int:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return main(argv)


def urcdm(argv: Sequence[str] | None = None) -> int:
    return _run("urcdm.cli", argv)


def urcdm_eval(argv: Sequence[str] | None = None) -> int:
    return _run("evaluation.cli", argv)


def urcdm_study(argv: Sequence[str] | None = None) -> int:
    return _run("study_app.cli", argv)
