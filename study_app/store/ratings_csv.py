"""A ratings CSV or an ``urcdm-study export`` CSV -> the [reader, arm, case] ratings MRMC needs (NaN: not read).

Ratings CSV: reader, arm (or treatment), case, truth, rating; truth is 1/0 or synthetic/real (1 = positive).
Export CSV: reader, case, arm, truth, answer[, confidence]; answer + confidence become one ordinal rating,
real 5 -> 1 ... real 1 -> 5, synthetic 1 -> 6 ... synthetic 5 -> 10 (no confidence: real 1, synthetic 2), so
higher = more sure the image is synthetic, the positive class.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from study_app.statistics.records import Design, answer_rating
from study_app.store.csv_files import csv_dict_reader
from study_app.store.spreadsheet import restore
from urcdm.errors import UserError

TRUTHS = {"1": True, "synthetic": True, "0": False, "real": False}
RATINGS_COLUMNS = ("reader", "arm", "case", "truth", "rating")
EXPORT_COLUMNS = ("reader", "case", "arm", "truth", "answer")


def read_design(path: str | Path, arm: str | None = None) -> Design:
    path = Path(path)
    with csv_dict_reader(path) as reader:
        if reader.fieldnames is None:
            raise UserError(f"{path}: empty file (need a header line and a row per rating)")
        columns = [name.strip().lower() for name in reader.fieldnames]
        # Cells an export neutralised for spreadsheets are read back as typed (study_app.store.spreadsheet).
        rows = [{k.strip().lower(): restore((v or "").strip()) for k, v in row.items() if k is not None}
                for row in reader]
    if "arm" not in columns and "treatment" in columns:  # the OR-DBM / RJafroc files say treatment
        columns.append("arm")
        for row in rows:
            row["arm"] = row.get("treatment", "")
    source, required = ("export", EXPORT_COLUMNS) if "answer" in columns else ("ratings", RATINGS_COLUMNS)
    missing = [c for c in required if c not in columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)} (need {','.join(required)}; or an "
                        "urcdm-study export with reader,case,arm,truth,answer[,confidence])")
    if not rows:
        raise UserError(f"{path}: no ratings")
    parse = _parse_rating if source == "ratings" else _parse_answer
    if source == "export":
        with_confidence = {bool(row.get("confidence")) for row in rows}
        if len(with_confidence) > 1:  # the two rating scales would overlap and the ranking would be meaningless
            raise UserError(f"{path}: confidence is given on some rows but not on others; give it on all or none")
    records = []
    for number, row in enumerate(rows, start=2):
        where = f"{path}:{number}"
        for column in required:
            if not row.get(column):
                raise UserError(f"{where}: empty {column}")
        truth = TRUTHS.get(row["truth"].lower())
        if truth is None:
            raise UserError(f"{where}: truth {row['truth']!r} is not one of 1, 0, synthetic, real")
        records.append((row["reader"], row["arm"], row["case"], truth, parse(row, where)))
    if arm is not None:
        records = [r for r in records if r[1] == arm]
        if not records:
            raise UserError(f"{path}: no ratings for arm {arm!r}")
    return _assemble(records, f"{path}", source)


def _parse_rating(row: dict, where: str) -> float:
    try:
        value = float(row["rating"])
    except ValueError:
        raise UserError(f"{where}: rating {row['rating']!r} is not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{where}: rating {row['rating']!r} is not a finite number")
    return value


def _parse_answer(row: dict, where: str) -> float:
    answer = row["answer"].lower()
    if answer not in ("real", "synthetic"):
        raise UserError(f"{where}: answer {row['answer']!r} is not one of real, synthetic")
    confidence = row.get("confidence") or None
    if confidence is not None and (not confidence.isdigit() or not 1 <= int(confidence) <= 5):
        raise UserError(f"{where}: confidence {confidence!r} is not an integer from 1 to 5")
    return float(answer_rating(answer, None if confidence is None else int(confidence)))


def _assemble(records: list, where: str, source: str) -> Design:
    readers = list(dict.fromkeys(r[0] for r in records))
    arms = list(dict.fromkeys(r[1] for r in records))
    truth_of: dict[str, tuple[bool, str, str]] = {}
    cases_of_arm: dict[str, dict[str, None]] = {a: {} for a in arms}
    seen = set()
    for reader, arm, case, truth, _ in records:
        if (reader, arm, case) in seen:
            raise UserError(f"{where}: reader {reader!r} rated case {case!r} in arm {arm!r} twice")
        seen.add((reader, arm, case))
        if case in truth_of and truth_of[case][0] != truth:
            first, first_arm, first_reader = truth_of[case]
            raise UserError(f"{where}: case {case!r} has truth {_label(first)} (arm {first_arm!r}, reader "
                            f"{first_reader!r}) but {_label(truth)} (arm {arm!r}, reader {reader!r})")
        truth_of.setdefault(case, (truth, arm, reader))
        cases_of_arm[arm][case] = None
    if len({v[0] for v in truth_of.values()}) < 2:
        only = _label(next(iter(truth_of.values()))[0])
        raise UserError(f"{where}: every case is {only}; an ROC analysis needs both positive (synthetic) "
                        "and negative (real) cases")
    for arm, cases in cases_of_arm.items():
        n_pos = sum(truth_of[c][0] for c in cases)
        for count, label in ((n_pos, "positive (synthetic)"), (len(cases) - n_pos, "negative (real)")):
            if count < 2:
                raise UserError(f"{where}: arm {arm!r} has {count} {label} case(s); the AUC variance needs at "
                                "least 2 positive and 2 negative cases")
    # Any design: a reader who did not rate a case in an arm leaves NaN there (study_app.statistics.mrmc_designs).
    cases = list(dict.fromkeys(case for arm_cases in cases_of_arm.values() for case in arm_cases))
    index = {c: k for k, c in enumerate(cases)}
    ratings = np.full((len(readers), len(arms), len(cases)), np.nan)
    r_index, a_index = {r: j for j, r in enumerate(readers)}, {a: i for i, a in enumerate(arms)}
    for reader, arm, case, _, value in records:
        ratings[r_index[reader], a_index[arm], index[case]] = value
    truth = np.array([truth_of[c][0] for c in cases])
    return Design(ratings, truth, readers, arms, cases, source)


def _label(truth: bool) -> str:
    return "positive (1/synthetic)" if truth else "negative (0/real)"


def _num(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(p) -> str:
    return "<0.0001" if p is not None and p < 1e-4 else _num(p)


def _row(label: str, t: dict) -> str:
    ci = "undefined" if t["low"] is None else f"[{t['low']:.4f}, {t['high']:.4f}]"
    df = "inf" if t["df"] is None else f"{t['df']:.2f}"
    return f"{label:<28} {t['estimate']:>9.5f} {_num(t['se'], 5):>9} {df:>7} {ci:>20} {_p(t['p']):>8}"


ANALYSES = (("random_readers_random_cases", "random readers, random cases (Hillis ddf)"),
            ("fixed_readers_random_cases", "fixed readers, random cases"),
            ("random_readers_fixed_cases", "random readers, fixed cases"))
HEADER = f"{'':<28} {'estimate':>9} {'SE':>9} {'df':>7} {'95% CI':>20} {'p':>8}"


def format_report(result: dict) -> str:
    """The text report: the design, AUC table, OR covariances where crossed, then per analysis the global
    test, differences and arm CIs, and the U-statistics (and split-plot OR) beside them."""
    arms = result["arms"]
    crossed = result.get("design", "crossed") == "crossed"
    title = "OR MRMC analysis" if crossed else "MRMC analysis"
    lines = [f"{title}: {len(result['readers'])} reader(s), {len(arms)} arm(s), {result['cases']} cases "
             f"({result['positives']} positive, {result['negatives']} negative); covariance: {result['method']}"]
    if "arm_designs" in result:
        lines.append("design: " + ", ".join(f"{arm} {design}" for arm, design in result["arm_designs"].items()))
    lines += ["", f"{'reader':<16}" + "".join(f"{a:>12}" for a in arms)]
    lines += [f"{reader:<16}" + "".join(f"{_num(row[a], 5):>12}" for a in arms) for reader, row in result["auc"].items()]
    lines.append(f"{'mean':<16}" + "".join(f"{result['arm_auc'][a]:>12.5f}" for a in arms))
    if result.get("covariances") is not None:
        c, v = result["covariances"], result["variance_components"]
        lines += ["", "Var(error) " + _num(c["var_error"], 8) + "  Cov1 " + _num(c["cov1"], 8) + "  Cov2 "
                  + _num(c["cov2"], 8) + "  Cov3 " + _num(c["cov3"], 8) + "  Var(R) " + _num(v["var_r"], 8)
                  + "  Var(T*R) " + _num(v["var_tr"], 8)]
    for key, title in ANALYSES:
        part = result[key]
        lines += ["", f"== {title}"]
        if part is None:
            few_readers = crossed or len(result["readers"]) < 2 or key == "random_readers_random_cases"
            lines.append("   not available: " + ("needs 2 or more readers" if few_readers else "needs a fully crossed design"))
            continue
        g = part["global"]
        if g is not None:
            df2 = "" if g["df2"] is None else f", {g['df2']:.2f}"
            lines.append(f"global test of equal arm AUCs: {g['test']}({g['df1']}{df2}) = {_num(g['stat'], 3)}, "
                         f"p = {_p(g['p'])}")
        lines.append(HEADER)
        lines += [_row(f"{d['arms'][0]} - {d['arms'][1]}", d) for d in part["differences"]]
        lines += [_row(f"arm {a['arm']} (H0 AUC=0.5)", a) for a in part["arms"]]
        if not crossed and key == "random_readers_random_cases":
            lines += [f"   arm {a['arm']}: {a['analysis']}" for a in part["arms"]]
    lines += _beside(result)
    lines += [f"note: {note}" for note in result["notes"]]
    return "\n".join(lines)


def _beside(result: dict) -> list[str]:
    """The U-statistics of Gallas (any design) and the split-plot OR rows, reported beside the headline."""
    lines = []
    ustat = result.get("u_statistics")
    if ustat:
        lines += ["", "== U-statistics (Gallas et al. 2009; iMRMC's method), random readers, random cases", HEADER]
        lines += [_row(f"{d['arms'][0]} - {d['arms'][1]}", d) for d in ustat["differences"]]
        lines += [_row(f"arm {a['arm']} (H0 AUC=0.5)", a) for a in ustat["arms_results"]]
    split = result.get("split_plot") or {}
    rows = {arm: row for arm, row in split.items() if "reason" not in row}
    if rows:
        lines += ["", "== split-plot OR (Obuchowski, Gallas & Hillis 2012), random readers, random cases", HEADER]
        lines += [_row(f"arm {arm} ({row['groups']} groups)", row) for arm, row in rows.items()]
    return lines
