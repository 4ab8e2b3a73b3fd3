"""Execute the reproduction notebooks: ``make notebooks`` (all, default parameters) or the tests.

Each notebook is kept as a jupytext py:percent source (``NN_name.py``, the readable diff) paired with
the ``.ipynb`` that carries the outputs of the last run. This pairs them (the source wins), runs the
notebook with papermill in this folder, and writes the executed ``.ipynb`` in place, so the figures
show on the project page without running anything. Prints one JSON line per notebook: its wall time.
A notebook that fails leaves the committed ``.ipynb`` as it was and prints the toolkit's one-line
``error:`` message (exit 2). A rerun that computes the same outputs writes the same file: cell ids
are their positions, and papermill's timings and absolute paths are left out.

    python notebooks/run.py [NAME ...] [-p KEY VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError

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
    try:  # the kernel logs a TCP warning and the interrupt that stops it on our terminal, above our error line
        papermill.execute_notebook(str(unexecuted), str(output), parameters=parameters or {}, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=False,
                                   extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    finally:
        unexecuted.unlink(missing_ok=True)
    return time.perf_counter() - started


class NotebookFailed(Exception):
    """A cell failed; ``line`` is the one-line message for the terminal."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def run_in_place(source: Path, parameters: dict) -> float:
    """``execute`` into a temporary file, which replaces ``source``'s .ipynb only if every cell ran."""
    committed = source.with_suffix(".ipynb")
    attempt = committed.with_name(f".{committed.stem}.run.ipynb")
    try:
        try:
            seconds = execute(source, attempt, parameters)
        except PapermillExecutionError as exc:
            raise NotebookFailed(failure_line(exc, attempt)) from None
        tidy(attempt, committed)
        os.replace(attempt, committed)
        return seconds
    finally:
        attempt.unlink(missing_ok=True)


def tidy(executed: Path, named: Path) -> None:
    """What changes on every run although the notebook's outputs do not: jupytext's random cell ids,
    papermill's timestamps and durations, and the machine's absolute paths."""
    notebook = nbformat.read(str(executed), 4)
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell-{index}"
        for key in ("execution", "papermill"):
            cell.metadata.pop(key, None)
    run = notebook.metadata.get("papermill", {})
    for key in ("duration", "start_time", "end_time"):
        run.pop(key, None)
    run.update(input_path=named.with_suffix(".py").name, output_path=named.name)
    nbformat.write(notebook, str(executed))


def failure_line(exc: Exception, executed: Path) -> str:
    """The ``error:`` line a cell printed (the toolkit's message), else the exception papermill saw."""
    if executed.exists():
        for cell in reversed(nbformat.read(str(executed), 4).cells):
            for output in reversed(cell.get("outputs", [])):
                lines = [line for line in output.get("text", "").splitlines() if line.startswith("error: ")]
                if output.get("name") == "stderr" and lines:
                    return lines[-1]
    return f"error: {getattr(exc, 'ename', type(exc).__name__)}: {getattr(exc, 'evalue', exc)}"


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
        try:
            seconds = run_in_place(source, parameters)
        except NotebookFailed as failed:  # the committed .ipynb is left as it was
            print(failed.line, file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("error: interrupted", file=sys.stderr)
            return 130
        print(json.dumps({"notebook": source.stem, "seconds": round(seconds, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
