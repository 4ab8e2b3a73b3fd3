"""The organiser's tables and plots (pure parts): reader order, totals of finished readers only,
and a 0.5 reference line that spans the panel."""

import pandas as pd

from study_app.store.database import StoredAnswer
from study_app.web.admin import reader_chart
from study_app.web.tables import finished_readers, natural_key, progress_rows


def test_readers_sort_naturally():
    names = ["reader-10", "reader-2", "Reader-1", "reader-2b", "path-03"]
    assert sorted(names, key=natural_key) == ["path-03", "Reader-1", "reader-2", "reader-2b", "reader-10"]


def _answer(reader, case):
    return StoredAnswer(reader=reader, case=case, arm="A", truth="real", answer="real", confidence=None,
                        shown_at=0.0, answered_at=1.0, image_id="", app_version="")


def test_progress_rows_in_natural_order_and_only_complete_readers_are_finished():
    assigned = {"reader-10": [object()] * 2, "reader-2": [object()] * 2}
    stored = [_answer("reader-10", "c1"), _answer("reader-10", "c2"), _answer("reader-2", "c1")]
    rows = progress_rows(assigned, stored)
    assert [row["reader"] for row in rows] == ["reader-2", "reader-10"]
    assert finished_readers(rows) == {"reader-10"}


def test_the_half_line_spans_every_panel():
    readers = pd.DataFrame({"arm": ["A", "A"], "reader": ["reader-10", "reader-2"], "p": [0.4, 0.6],
                            "p_low": [0.2, 0.4], "p_high": [0.6, 0.8], "tp": [3, 2], "fp": [2, 3]})
    spec = reader_chart(readers).to_dict()
    layers = spec["spec"]["layer"]
    half = [layer for layer in layers if layer["encoding"].get("x", {}).get("datum") == 0.5]
    assert len(half) == 1 and "y" not in half[0]["encoding"]  # with a y, it is one stub per reader
    assert layers[0]["encoding"]["y"]["sort"] == ["reader-2", "reader-10"]


def test_the_organisers_tables_show_a_dash_never_none_and_intervals_beside_estimates():
    from study_app.statistics.scoring import Answer, score
    from study_app.web.tables import display_progress, display_results, result_rows

    answers = [Answer(r, f"c{i}", arm, "synthetic" if i % 2 else "real", "real" if (i + len(r)) % 3 else "synthetic", None)
               for arm in ("A", "B") for r in ("r1", "reader-2") for i in range(6)]
    rows = result_rows(score(answers, by="arm"))
    assert any(value is None for row in rows for value in row.values())  # readers' rows have no w-MAE, for one
    shown = display_results(rows, with_arm=True)
    cells = [value for row in shown for value in row.values()]
    assert None not in cells and "None" not in map(str, cells) and "–" in cells
    reader_row = next(row for row in shown if row["reader"] == "r1" and row["arm"] == "A")
    first = next(row for row in rows if row["reader"] == "r1" and row["arm"] == "A")
    assert reader_row["p (95 % CI)"] == f"{first['p']:.2f} ({first['p_low']:.2f}–{first['p_high']:.2f})"
    assert "arm" not in display_results(rows)[0] and len(display_results(rows)[0]) == 13
    progress = display_progress(progress_rows({"r1": [object()], "r9": [object()]}, [_answer("r1", "c1")]))
    assert [row["last answer"] for row in progress][1] == "–" and progress[1]["median s / case"] == "–"
