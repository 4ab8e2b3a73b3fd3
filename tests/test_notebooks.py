"""The reproduction notebooks run end to end (papermill, as `make notebooks` runs them), agree with
the command line, react to their parameters, and stop early with one error line on bad input."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path

import nbformat
import pytest

pytest.importorskip("papermill")
import jupytext  # noqa: E402
from conftest import PLUGINS, REPO_ROOT, TINY_EXTRACTOR  # noqa: E402
from papermill.exceptions import PapermillExecutionError  # noqa: E402

from study_app.cli import main as study_cli  # noqa: E402

sys.path.insert(0, str(REPO_ROOT / "notebooks"))
import run as notebooks  # noqa: E402

TABLE1 = REPO_ROOT / "notebooks" / "01_table1_reader_study.py"


def outputs(path: Path) -> str:
    """Everything the executed notebook printed or displayed, as text."""
    text = []
    for cell in nbformat.read(str(path), 4).cells:
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
        committed = nbformat.read(str(source.with_suffix(".ipynb")), 4)
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
    executed = nbformat.read(str(tmp_path / "bad" / "executed.ipynb"), 4)
    stderr = [o["text"] for c in executed.cells for o in c.get("outputs", []) if o.get("name") == "stderr"]
    assert any(text.startswith("error: ") and "missing column" in text for text in stderr)


def test_run_py_keeps_the_committed_notebook_on_failure_and_writes_a_stable_one_on_success(real_data, tmp_path,
                                                                                          monkeypatch, capfd):
    """`notebooks/run.py` with a bad parameter wrote the failed run over the committed .ipynb and hid the
    toolkit's error line in a papermill traceback, after two lines of the kernel's own logging; a good
    rerun changed ids, timings and paths."""
    source = tmp_path / TABLE1.name
    source.write_text(TABLE1.read_text())
    committed = source.with_suffix(".ipynb")
    committed.write_bytes(TABLE1.with_suffix(".ipynb").read_bytes())
    before = committed.read_bytes()
    monkeypatch.setattr(notebooks, "sources", lambda: [source])
    where = ["-p", "out_dir", str(tmp_path / "build"), "-p", "figures", str(tmp_path / "figures")]
    missing = tmp_path / "none.csv"
    assert notebooks.main([source.stem, *where, "-p", "answers", str(missing)]) == 2
    assert capfd.readouterr().err.splitlines() == [f"error: {missing}: no such file"]  # the kernel's stderr too
    assert committed.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [committed.name, source.name]
    # A successful run, without a kernel: the committed notebook's last run, as papermill wrote it.
    ran = nbformat.read(str(TABLE1.with_suffix(".ipynb")), 4)
    ran.metadata["papermill"].update(start_time="2026-12-05T07:22:52", duration=6.3, input_path=str(tmp_path / "in"))
    ran.cells[0].id, ran.cells[0].metadata["execution"] = "6d6da2dd", {"iopub.status.busy": "2026-12-05T07:22:53Z"}
    monkeypatch.setattr(notebooks, "execute", lambda source, output, parameters: nbformat.write(ran, str(output)) or 1.0)
    assert notebooks.main([source.stem, *where]) == 0
    written = nbformat.read(str(committed), 4)
    assert [cell.id for cell in written.cells] == [f"cell-{i}" for i in range(len(written.cells))]
    run = written.metadata["papermill"]
    assert (run["input_path"], run["output_path"]) == (source.name, committed.name)  # not this machine's paths
    assert "start_time" not in committed.read_text() and "duration" not in committed.read_text()


# Notebooks 02-04 share one build folder, as `make notebooks` runs them; CI-sized parameters: the
# tiny unets on a smaller slide (3 x 3 last-level patches instead of 9 x 9, a config YAML like any
# user's), a few training and sampling steps, two slides per method, few crops, and the tests' small
# plug-in extractor instead of Inception (4 crops/s on 2 cores), a smaller overview for the glass map.
# They check that the chain runs and
# what it writes, not the numbers, which the defaults produce (the committed notebooks).
CHAIN_PARAMETERS = {
    "02_fid_pfid": {"train_steps": 3, "slides_per_method": 2, "sample_steps": "2,2,2", "real_regions": 6, "n_pfid": 48,
                    "n_scale": 32, "workers": 0, "extractor": TINY_EXTRACTOR},
    "03_gigapixel_sampling": {"sample_steps": "2,2,2", "view_side": 300},
    "04_study_from_samples": {"crops_per_side": 4, "cases_per_reader": 4, "readers": 4},
}


@pytest.fixture(scope="module")
def chain(real_data, micro_config_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("notebook-chain")
    config = str(micro_config_file)
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(PLUGINS), prepend=os.pathsep)  # the kernel imports the plug-in extractor
        for name, parameters in CHAIN_PARAMETERS.items():
            extra = {"data_dir": str(real_data)} if name != "04_study_from_samples" else {}
            executed = root / f"{name}.ipynb"
            notebooks.execute(REPO_ROOT / "notebooks" / f"{name}.py", executed,
                              {"build": str(root / "build"), "figures": str(root / "figures"), "config": config,
                               **extra, **parameters})
            runs[name] = executed
    return root, runs


def test_fid_notebook_trains_samples_and_scores_both_methods(chain):
    root, runs = chain
    build = root / "build" / "micro"
    assert len(list((build / "models").glob("*/checkpoint.pt"))) == 12  # 9 URCDM unets + 3 outpainting
    for method in ("urcdm", "outpaint"):
        assert len(list((build / "samples" / method).glob("seed*.tiff"))) == 2
    text = outputs(runs["02_fid_pfid"])
    assert "pFID-50k" in text and "comparable" in text and "ours differs from the paper in: config micro" in text
    assert (root / "figures" / "fid_by_magnification.png").stat().st_size > 10_000


def test_fid_notebook_reacts_to_its_parameters(chain, real_data, micro_config_file):
    """A rerun on the same build with fewer pFID patches: training and sampling come from the build
    (nothing trains again), and the pFIDs are computed anew from the new number of patches."""
    root, runs = chain
    results = root / "build" / "micro" / "results.json"
    first = json.loads(results.read_text())
    parameters = {**CHAIN_PARAMETERS["02_fid_pfid"], "n_pfid": 40}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", str(PLUGINS), prepend=os.pathsep)
        notebooks.execute(REPO_ROOT / "notebooks" / "02_fid_pfid.py", root / "02_rerun.ipynb",
                          {"build": str(root / "build"), "figures": str(root / "figures-rerun"),
                           "config": str(micro_config_file), "data_dir": str(real_data), **parameters})
    second = json.loads(results.read_text())
    assert all(run["trained now"] == 0 for run in second["training"])
    for method in ("urcdm", "outpaint"):
        before, after = first["pfid"][method], second["pfid"][method]
        assert (before["n_fake"], after["n_fake"]) == (48, 40)
        key = before["metrics"][0]
        assert after[key] != pytest.approx(before[key], rel=1e-6)
    assert second["level0"] == first["level0"] | {"seconds": second["level0"]["seconds"]}  # untouched by n_pfid


def test_sampling_notebook_draws_the_geometry_scores_seams_and_projects_the_cost(chain):
    root, runs = chain
    text = outputs(runs["03_gigapixel_sampling"])
    assert "EFLOP" in text and "NVIDIA H200" in text and "seam score" in text
    for figure in ("geometry_on_a_real_slide.png", "sampled_slide_three_zooms.png"):
        assert (root / "figures" / figure).stat().st_size > 10_000


def test_study_notebook_prepares_a_study_and_stops_before_answers(chain):
    root, runs = chain
    study = root / "build" / "micro" / "study"
    cases = json.loads((study / "run" / "cases.json").read_text())["cases"]
    assert {c["arm"] for c in cases} == {"URCDM", "Outpainting"} and not (study / "run" / "answers.sqlite").exists() \
        or not _answered(study / "run" / "answers.sqlite")
    assert "urcdm-study run" in outputs(runs["04_study_from_samples"])


def _answered(store: Path) -> int:
    from study_app.store.database import AnswerStore
    return len(AnswerStore(store).all_answers())


def test_a_models_folder_of_another_config_stops_the_notebook_first(tmp_path, capsys):
    """The check runs in the first cell after the parameters of every notebook that uses models, and
    refuses models trained with another config with one error line (the cell fails: SystemExit)."""
    from urcdm.config import tiny
    from urcdm.notebook import check_models_folder, user_errors

    for name in ("02_fid_pfid", "03_gigapixel_sampling"):
        code = [c.source for c in jupytext.read(REPO_ROOT / "notebooks" / f"{name}.py").cells if c.cell_type == "code"]
        assert "check_models_folder(" in code[1], name  # code[0] is the parameters cell
    run = tmp_path / "models" / "l0u0"
    run.mkdir(parents=True)
    other = tiny()
    other.__class__(**{**other.__dict__, "name": "other"}).save(run / "config.yaml")
    check_models_folder(tmp_path / "models" / "missing", tiny())  # nothing trained yet: nothing to refuse
    with pytest.raises(SystemExit) as stop, user_errors():
        check_models_folder(tmp_path / "models", tiny())
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "trained with config 'other', not the 'tiny'" in err and err.count("\n") == 1
