"""A run folder as a user meets it: their own files are never written into, a first try stopped before its
first checkpoint leaves nothing, Ctrl-C is heeded after the step under way (and never kills a
DataLoader worker under the main process), and ``train-all`` checks every job's inputs before the first
trains."""

from __future__ import annotations

import ast
import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

import urcdm.training.loop as loop
from urcdm.cli import main
from urcdm.config import from_dict, tiny
from urcdm.errors import UserError
from urcdm.interrupts import ignore_interrupts, stop_between_steps
from urcdm.models import read_checkpoint
from urcdm.training.loop import Job, train
from urcdm.training.shards import ShardPairs


def logged_steps(run: Path) -> list[int]:
    with open(run / "log.csv", newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle)]


def test_a_folder_of_the_users_own_files_is_refused_and_left_as_it_was(training_slides, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "config.yaml").write_text("mine\n")
    (out / "log.csv").write_text("my,notes\n")
    assert main(["train", "--config", "tiny", "--level", "0", "--unet", "0", "--data", str(training_slides),
                 "--out", str(out), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not a run to resume" in err[0]
    assert {path.name: path.read_text() for path in out.iterdir()} == {"config.yaml": "mine\n", "log.csv": "my,notes\n"}


def test_a_first_try_stopped_before_its_first_checkpoint_takes_back_what_it_wrote(training_slides, tmp_path, monkeypatch):
    def interrupted(path, payload):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "save_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(Job(tiny(), 0, 0, training_slides, tmp_path / "run", steps=2, progress=False))
    assert not (tmp_path / "run").exists()


def test_what_a_killed_first_try_left_is_trained_again_from_step_0(training_slides, tmp_path):
    # SIGKILL before the first checkpoint leaves this run's config.yaml and a log: the next try takes the
    # folder and starts the log again (the rows of the killed try were appended to before).
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(tiny().to_yaml())
    (run / "log.csv").write_text(",".join(loop.LOG_COLUMNS) + "\n1,0.9,1e-4,1.0,,0.1\n2,0.8,1e-4,1.0,,0.2\n")
    train(Job(tiny(), 0, 0, training_slides, run, steps=2, progress=False))
    assert logged_steps(run) == [1, 2]
    assert read_checkpoint(run / "checkpoint.pt")["step"] == 2


def test_ctrl_c_during_a_step_stops_the_run_after_that_step(training_slides, tmp_path, monkeypatch):
    seed_of = loop.step_seed

    def ctrl_c_as_step_2_begins(seed: int, rank: int, step: int) -> int:
        if rank == 0 and step == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return seed_of(seed, rank, step)

    monkeypatch.setattr(loop, "step_seed", ctrl_c_as_step_2_begins)
    run = tmp_path / "run"
    assert tiny().train.checkpoint_every > 2  # the checkpoint at step 2 is the stop's own
    # as in a terminal: a test run in the background (CI) starts with SIGINT ignored
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(Job(tiny(), 0, 0, training_slides, run, steps=5, progress=False))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back as it was
    finally:
        signal.signal(signal.SIGINT, outside)
    assert read_checkpoint(run / "checkpoint.pt")["step"] == 2 and logged_steps(run) == [1, 2]


def test_a_stop_signal_the_caller_ignores_stays_ignored():
    outside = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with stop_between_steps() as requested:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert not requested()
    finally:
        signal.signal(signal.SIGINT, outside)


def test_a_schedulers_sigterm_ends_a_run_with_a_checkpoint_to_resume_from(training_slides, tmp_path):
    # SLURM and Kubernetes send SIGTERM, then SIGKILL after a grace period: the steps since the last
    # checkpoint were lost with Python's default action.
    run, config = tmp_path / "run", tmp_path / "rare-checkpoints.yaml"
    replace(tiny(), train=replace(tiny().train, checkpoint_every=1000)).save(config)
    command = [sys.executable, "-m", "urcdm.cli", "train", "--config", str(config), "--level", "0", "--unet", "0",
               "--data", str(training_slides), "--out", str(run), "--steps", "1000"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not ((run / "log.csv").exists() and len(logged_steps(run)) >= 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    step = read_checkpoint(run / "checkpoint.pt")["step"]
    assert process.returncode == 130 and err.rstrip().endswith("error: interrupted")
    assert 3 <= step < 1000 and logged_steps(run) == list(range(1, step + 1))
    assert f"checkpoint at step {step}: run the same command again to resume" in err


def test_train_all_checks_every_levels_pairs_before_the_first_job_trains(tmp_path, monkeypatch, capsys):
    class Found:  # what the jobs' checks read of a level's pairs
        slides, data_digest, mpp, positions = ["a.svs"], "digest", None, None

    def pairs_of_levels_0_and_1(root, config, level, method):
        if level == 2:
            raise UserError(f"{root}/level2.zarr: no pairs for level 2 here")
        return Found()

    trained = []
    monkeypatch.setattr(ShardPairs, "open", staticmethod(pairs_of_levels_0_and_1))
    monkeypatch.setattr(loop, "train", lambda job: trained.append(job))
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    assert main(["train-all", "--config", "tiny", "--pairs", str(pairs), "--out", str(tmp_path / "runs"), "--steps", "1"]) == 2
    assert "level2.zarr" in capsys.readouterr().err and trained == []
    assert not any((tmp_path / "runs").glob("*/*"))


def test_train_all_print_json_is_the_jobs_as_json(tmp_path, capsys):
    assert main(["train-all", "--config", "tiny", "--pairs", "pairs", "--out", "runs", "--print", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [(job["level"], job["unet"], job["gpu"]) for job in jobs] == [(l, u, 3 * l + u) for l in range(3) for u in range(3)]
    assert jobs[4]["environment"] == {"CUDA_VISIBLE_DEVICES": "4"} and "--out" in jobs[4]["command"]
    assert jobs[4]["command"][jobs[4]["command"].index("--out") + 1] == str(Path("runs") / "l1u1")


def test_missing_outpaint_pairs_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(UserError, match="prepare-pairs --config tiny --method outpaint --level 2"):
        ShardPairs.open(tmp_path, tiny(), 2, "outpaint")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        ShardPairs.open(tmp_path / "file", tiny(), 2, "urcdm")


@pytest.mark.parametrize("argv", [["convert", "IN", "out.png"], ["sample", "--config", "tiny", "--out", "out.png"]])
def test_a_pyramid_named_as_another_format_is_refused_before_any_work(argv, real_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [str(real_data / "slides" / "cmu-1-small-region.svs") if arg == "IN" else arg for arg in argv]
    assert main(argv) == 2
    assert "a pyramid is a BigTIFF" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_ctrl_c_while_a_command_line_is_imported_is_one_line(monkeypatch, capsys):
    import urcdm.entry_points

    def interrupted_import(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(urcdm.entry_points.importlib, "import_module", interrupted_import)
    for script in (urcdm.entry_points.urcdm, urcdm.entry_points.urcdm_eval, urcdm.entry_points.urcdm_study):
        assert script(["--help"]) == 130
        assert capsys.readouterr().err == "error: interrupted\n"


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_a_finished_command_shuts_down_keeps_its_status_and_says_nothing(number):
    """Ctrl-C just after "wrote ..." landed in the interpreter's exit hooks: a traceback from tqdm's or
    threading's hook, or exit 130 for a command whose output was complete."""
    probe = ("import atexit, os, signal, time\n"
             f"atexit.register(lambda: (os.kill(os.getpid(), {int(number)}), time.sleep(1)))  # during shutdown\n"
             "from urcdm.entry_points import urcdm\n"
             "raise SystemExit(urcdm(['config', 'tiny']))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (0, "")
    assert from_dict(yaml.safe_load(done.stdout)) == tiny()  # the whole result reached stdout


class SignalsItsOwnProcess(torch.utils.data.Dataset):
    """Each item sends a stop signal to the process reading it: a DataLoader worker, in the test."""

    def __init__(self, number: int):
        self.number = number

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        os.kill(os.getpid(), self.number)
        return index


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_dataloader_worker_leaves_ctrl_c_and_sigterm_to_the_main_process(number):
    # A worker that died of the terminal's Ctrl-C made the main process raise "DataLoader worker exited
    # unexpectedly", a traceback, and hang (urcdm-eval pfid, 1 Ctrl-C in 20); a scheduler's SIGTERM
    # reaches every process of the job the same way.
    loader = torch.utils.data.DataLoader(SignalsItsOwnProcess(number), batch_size=None, num_workers=1,
                                         worker_init_fn=ignore_interrupts)
    assert list(loader) == [0, 1, 2, 3]


def test_every_dataloader_with_workers_is_built_to_ignore_ctrl_c():
    root = Path(__file__).resolve().parents[1]
    built = []
    for path in [*(root / "urcdm").rglob("*.py"), *(root / "evaluation").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "DataLoader":
                init = {k.arg: ast.unparse(k.value) for k in node.keywords}.get("worker_init_fn")
                built.append((str(path.relative_to(root)), init))
    assert len(built) >= 4 and all(init == "ignore_interrupts" for _, init in built), built
