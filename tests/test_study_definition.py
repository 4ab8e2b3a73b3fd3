"""Study YAML validation, secrets and per-reader case assignment (pure, milliseconds)."""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from study_app.access import (
    FIRST_WAIT_S,
    FREE_TRIES,
    MAX_WAIT_S,
    backoff_seconds,
    credential_fingerprint,
    hash_secret,
    is_hashed_secret,
    opaque_id,
    verify_secret,
)
from study_app.preparation.cases import (
    Case,
    assign_cases,
    balance_pool,
    check_assignable,
)
from study_app.preparation.study import parse_study
from urcdm.errors import UserError

VALID = {
    "title": "Which is real?",
    "seed": 3,
    "cases_per_reader": 4,
    "arms": [{"name": "URCDM", "magnification": "20x",
              "real": {"images": "real/"},
              "synthetic": {"slides": "fake/*.tiff", "crops": {"n": 10, "level": 2, "size": 512, "min_tissue": 0.5}}}],
    "access": {"readers": [{"id": "path-01", "code": "abc"}]},
    "admin": {"secret_env": "STUDY_ADMIN"},
}


def parse(values, base=Path("/studies")):
    return parse_study(values, base=base, default_workdir=base / "s.study")


def with_change(path: str, value):
    values = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = values
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return values


def test_a_valid_study_parses_with_paths_resolved_against_the_study_file():
    study = parse(VALID)
    arm = study.arms[0]
    assert arm.real.spec == "/studies/real" and arm.real.crops is None
    assert arm.synthetic.spec == "/studies/fake/*.tiff" and arm.synthetic.n == 10
    assert (arm.synthetic.crops.mode, arm.synthetic.crops.level, arm.synthetic.crops.patch_size) == ("fixed", 2, 512)
    assert study.workdir == Path("/studies/s.study") and study.readers == {"path-01": "abc"}
    assert (study.display.format, study.display.parity) == ("auto", "refuse") and study.balance == "equal" and study.shared_cases
    assert study.display.encoding(2048).format == "raw" and study.display.encoding(2049).format == "jpeg"
    assert study.session_hours == 12
    assert parse(with_change("access.session_hours", 0.5)).session_hours == 0.5
    for bad in (0, -1, 24 * 15, "long"):
        with pytest.raises(UserError, match=r"^access\.session_hours"):
            parse(with_change("access.session_hours", bad))


@pytest.mark.parametrize("path, value, field", [
    ("arms", [], "arms"),
    ("arms.0.name", KeyError, "arms[0].name"),
    ("arms.0.synthetic.crops.level", 7, "arms[0].synthetic.crops"),
    ("arms.0.synthetic.crops.n", 0, "arms[0].synthetic.crops.n"),
    ("arms.0.synthetic.crops.colour", 1, "arms[0].synthetic.crops.colour"),
    ("arms.0.real", {"images": "a", "slides": "b"}, "arms[0].real"),
    ("arms.0.real", {"images": "a", "crops": {"n": 2}}, "arms[0].real.crops"),
    ("cases_per_reader", 5, "cases_per_reader"),
    ("cases_per_reader", True, "cases_per_reader"),
    ("balance", "mostly", "balance"),
    ("display", {"format": "gif"}, "display.format"),
    ("display", {"parity": "ignore"}, "display.parity"),
    ("display", {"size": 20000}, "display.size"),
    ("admin", {"secret": "hunter2"}, "admin.secret"),
    ("admin", {"secret_hash": "not-a-hash"}, "admin.secret_hash"),
    ("admin", {}, "admin"),
    ("access", {"open": True, "readers": [{"id": "a", "code": "b"}]}, "access"),
    ("access", {"readers": [{"id": "a", "code": "b"}, {"id": "a", "code": "c"}]}, "access.readers[1].id"),
    ("title", "URCDM or real?", "title"),
    ("show_magnification", "yes", "show_magnification"),
    ("unexpected", 1, "unexpected"),
])
def test_a_malformed_study_is_one_error_naming_the_field(path, value, field):
    with pytest.raises(UserError) as error:
        parse(with_change(path, value))
    assert str(error.value).startswith(f"{field}:"), str(error.value)


def test_show_magnification_needs_every_arm_to_say_its_magnification():
    values = with_change("show_magnification", True)
    assert parse(values).show_magnification
    del values["arms"][0]["magnification"]
    with pytest.raises(UserError, match=r"^arms\[0\]\.magnification: required"):
        parse(values)


def test_the_cli_reports_a_bad_study_file_as_one_error_line(tmp_path, capsys):
    from study_app.cli import main

    study = tmp_path / "study.yaml"
    study.write_text("arms: [\n")
    assert main(["prepare", str(study)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {study}: not valid YAML")
    study.write_text("title: x\narms: []\naccess: {open: true}\nadmin: {secret_env: X}\n")
    assert main(["prepare", str(study)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {study}: arms: at least one arm is needed\n"


def test_hashed_secrets_verify_and_plain_codes_compare_exactly():
    hashed = hash_secret("correct horse")
    assert is_hashed_secret(hashed) and hashed != hash_secret("correct horse")  # salted
    assert verify_secret("correct horse", hashed) and not verify_secret("correct hors", hashed)
    sha = "sha256:" + hashlib.sha256(b"code-7").hexdigest()
    assert verify_secret("code-7", sha) and not verify_secret("code-8", sha)
    assert verify_secret("abc", "abc") and not verify_secret("abcd", "abc") and not verify_secret("", "")


def test_a_session_fingerprint_follows_the_credential_and_the_key():
    key, other = b"k" * 32, b"o" * 32
    base = credential_fingerprint(key, "reader", "path-01", "scrypt:old")
    assert base == credential_fingerprint(key, "reader", "path-01", "scrypt:old")
    assert len({base, credential_fingerprint(key, "reader", "path-01", "scrypt:new"),
                credential_fingerprint(key, "reader", "path-02", "scrypt:old"),
                credential_fingerprint(key, "organiser", "path-01", "scrypt:old"),
                credential_fingerprint(other, "reader", "path-01", "scrypt:old")}) == 5
    assert "old" not in base
    assert opaque_id(key, "case", "URCDM", "real") != opaque_id(other, "case", "URCDM", "real")


def test_wrong_codes_wait_longer_each_time_up_to_the_cap():
    waits = [backoff_seconds(n) for n in range(40)]
    assert waits[:FREE_TRIES] == [0] * FREE_TRIES and waits[FREE_TRIES] == FIRST_WAIT_S
    assert all(b == min(2 * a, MAX_WAIT_S) for a, b in zip(waits[FREE_TRIES:], waits[FREE_TRIES + 1:]))
    assert max(waits) == MAX_WAIT_S and sum(waits[:30]) > 3600  # 30 wrong codes in a row cost hours, not nothing


def pool(arms=("A", "B"), real=10, synthetic=10) -> list[Case]:
    return [Case(f"{arm}-{truth}-{i}", arm, truth, f"/{arm}/{truth}/{i}.png", None)
            for arm in arms for truth, n in (("real", real), ("synthetic", synthetic)) for i in range(n)]


def test_balancing_keeps_equal_real_and_synthetic_per_arm():
    kept, dropped = balance_pool(pool(real=10, synthetic=7), seed=0)
    counts = Counter((c.arm, c.truth) for c in kept)
    assert set(counts.values()) == {7} and dropped == {"A": 3, "B": 3}
    assert kept == balance_pool(pool(real=10, synthetic=7), seed=0)[0]


def test_each_reader_gets_a_balanced_deterministic_shuffle():
    cases = pool()
    first = assign_cases(cases, "r1", seed=5, cases_per_reader=6)
    assert first == assign_cases(cases, "r1", seed=5, cases_per_reader=6)
    assert Counter((c.arm, c.truth) for c in first) == {(a, t): 3 for a in "AB" for t in ("real", "synthetic")}
    second = assign_cases(cases, "r2", seed=5, cases_per_reader=6)
    assert {c.id for c in first} == {c.id for c in second}      # shared cases ...
    assert [c.id for c in first] != [c.id for c in second]      # ... in each reader's own order
    own = assign_cases(cases, "r2", seed=5, cases_per_reader=6, shared_cases=False)
    assert {c.id for c in own} != {c.id for c in first}
    everything = assign_cases(cases, "r3", seed=5)
    assert sorted(c.id for c in everything) == sorted(c.id for c in cases)


def test_orders_mix_truths_and_arms_rather_than_grouping_them():
    for i in range(20):
        run = assign_cases(pool(), f"r{i}", seed=0)
        for attribute in ("truth", "arm"):
            labels = [getattr(c, attribute) for c in run]
            assert labels != sorted(labels) and labels != sorted(labels, reverse=True)


def test_an_impossible_assignment_fails_before_the_study_starts():
    with pytest.raises(UserError, match="needs 6 real and 6 synthetic"):
        check_assignable(pool(real=5, synthetic=5), cases_per_reader=12, balance="equal")
    with pytest.raises(UserError, match="needs both real and synthetic"):
        check_assignable(pool(real=5, synthetic=0), cases_per_reader=None, balance="equal")
    check_assignable(pool(), cases_per_reader=20, balance="equal")


def test_run_refuses_a_port_in_use_with_one_error_line(demo_study_template, capsys):
    import socket

    from study_app.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["run", str(demo_study_template[0] / "study.yaml"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1


def test_hash_secret_reads_stdin_and_prints_a_verifiable_hash(monkeypatch, capsys):
    import io

    from study_app.cli import main

    monkeypatch.setattr("sys.stdin", io.StringIO("organiser pass\n"))
    assert main(["hash-secret"]) == 0
    hashed = capsys.readouterr().out.strip()
    assert verify_secret("organiser pass", hashed) and not verify_secret("organiser", hashed)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["hash-secret"]) == 2
