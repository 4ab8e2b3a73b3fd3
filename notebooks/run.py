"""Execute the reproduction notebooks: ``make notebooks`` (all, default parameters) or the tests.

Each notebook is kept as a jupytext py:percent source (``NN_name.py``, the readable diff) paired with
the ``.ipynb`` that carries the outputs of the last run. This pairs them (the source wins), runs the
notebook with papermill in this folder, and writes the executed ``.ipynb`` in place, so the figures
show on the project page without running anything. Prints one JSON line per notebook: its wall time.

    python notebooks/run.py [NAME ...] [-p KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill

HERE = Path(__file__).resolve().parent


def sources() -> list[Path]:
    return sorted(HERE.glob("[0-9][0-9]_*.py"))


def as_notebook(source: Path) -> nbformat.NotebookNode:
    return jupytext.read(source)


def execute(source: Path, output: Path, parameters: dict | None = None, cwd: Path = HERE) -> float:
    """Run ``source`` with ``parameters`` into ``output`` (an .ipynb); returns the wall seconds.
    A failing cell raises papermill's PapermillExecutionError, which names the cell and the error."""
    notebook = as_notebook(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    unexecuted = output.with_name(f".{output.stem}.in.ipynb")
    nbformat.write(notebook, unexecuted)
    started = time.perf_counter()
    try:
        papermill.execute_notebook(str(unexecuted), str(output), parameters=parameters or {}, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=False)
    finally:
        unexecuted.unlink(missing_ok=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all), e.g. 01_table1_reader_study")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                        help="a parameter (YAML-parsed value), for every notebook run")
    args = parser.parse_args(argv)
    import yaml

    parameters = {key: yaml.safe_load(value) for key, value in args.p}
    chosen = [s for s in sources() if not args.names or s.stem in args.names]
    if not chosen:
        print(f"error: no notebook named {', '.join(args.names)} in {HERE}", file=sys.stderr)
        return 2
    for source in chosen:
        seconds = execute(source, source.with_suffix(".ipynb"), parameters)
        print(json.dumps({"notebook": source.stem, "seconds": round(seconds, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
