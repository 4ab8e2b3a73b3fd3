"""The reproduction notebooks run end to end (papermill, as `make notebooks` runs them), agree with
the command line, react to their parameters, and stop early with one error line on bad input."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("papermill")
import jupytext  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

from conftest import REPO_ROOT  # noqa: E402
from study_app.cli import main as study_cli  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "notebooks"))
import run as notebooks  # noqa: E402

TABLE1 = REPO_ROOT / "notebooks" / "01_table1_reader_study.py"


def outputs(path: Path) -> str:
    """Everything the executed notebook printed or displayed, as text."""
    text = []
    for cell in nbformat.read(path, 4).cells:
        for output in cell.get("outputs", []):
            text.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "\n".join(text)


def run_table1(tmp_path: Path, name: str, **parameters) -> Path:
    out = tmp_path / name
    notebooks.execute(TABLE1, out / "executed.ipynb",
                      {"out_dir": str(out / "build"), "figures": str(out / "figures"), **parameters})
    return out


def test_committed_notebooks_are_their_sources_run():
    """Each .ipynb holds exactly its py:percent source's cells (jupytext pairing), with outputs."""
    for source in notebooks.sources():
        committed = nbformat.read(source.with_suffix(".ipynb"), 4)
        paired = jupytext.read(source)
        assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in paired.cells], source
        assert any(cell.get("outputs") for cell in committed.cells if cell.cell_type == "code"), f"{source}: not run"


def test_table1_equals_urcdm_study_score_and_flags_the_misprint(real_data, tmp_path, capsys):
    out = run_table1(tmp_path, "paper", data_dir=str(real_data))
    ours = json.loads((out / "build" / "result.json").read_text())
    assert study_cli(["score", str(out / "build" / "answers.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ours
    printed = {(r["arm"], r["reader"]): r for r in csv.DictReader(open(real_data / "paper" / "table1.csv"))}
    scored = {(arm, r["reader"]): r for arm, g in ours["arms"].items() for r in g["readers"]}
    assert scored.keys() == printed.keys()
    assert all((r["tp"], r["fp"]) == (int(printed[k]["tp"]), int(printed[k]["fp"])) for k, r in scored.items())
    text = outputs(out / "executed.ipynb")
    # Every printed value that its own counts do not give is named (the data's README lists one).
    misprints = [k for k, r in scored.items() if abs(round(r["abs_p_minus_half"], 4) - float(printed[k]["printed_abs_p_minus_half"])) > 1e-9
                 or abs(round(r["p"], 4) - float(printed[k]["printed_p"])) > 1e-9]
    assert misprints and all(f"{arm} {reader}:" in text for arm, reader in misprints)
    assert (out / "figures" / "table1_p_per_reader.png").stat().st_size > 10_000
    assert (out / "figures" / "table1_mrmc_roc.png").stat().st_size > 10_000


def test_table1_of_a_real_study_export_with_its_mrmc(real_data, tmp_path):
    """answers= an export: that study's table (not the paper's), and its reader-averaged AUC."""
    export = tmp_path / "answers.csv"
    with open(export, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["reader", "case", "arm", "truth", "answer", "confidence"])
        for reader, skill in (("r1", 0), ("r2", 1), ("r3", 2)):
            for case in range(12):
                truth = "synthetic" if case % 2 else "real"
                right = (case + skill) % 3 != 0  # each reader errs on a different third
                answer = truth if right else ("real" if truth == "synthetic" else "synthetic")
                writer.writerow([reader, f"c{case}", "arm-a", truth, answer, 1 + (case * 7 + skill) % 5])
    out = run_table1(tmp_path, "study", data_dir=str(real_data), answers=str(export))
    result = json.loads((out / "build" / "result.json").read_text())
    assert list(result["arms"]) == ["arm-a"] and result["arms"]["arm-a"]["total"]["n"] == 36
    text = outputs(out / "executed.ipynb")
    assert "no printed table to compare with" in text and "arm-a" in text and "Van Dyke" not in text.split("MRMC source:")[1]


def test_table1_with_an_unreadable_answers_file_stops_with_one_error_line(real_data, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("reader,case\nr1,c1\n")
    with pytest.raises(PapermillExecutionError) as failure:
        run_table1(tmp_path, "bad", data_dir=str(real_data), answers=str(bad))
    assert failure.value.exec_count <= 3  # parameters, papermill's injected ones, then the first cell
    executed = nbformat.read(tmp_path / "bad" / "executed.ipynb", 4)
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert any(text.startswith("error: ") and "missing column" in text for text in stderr)
