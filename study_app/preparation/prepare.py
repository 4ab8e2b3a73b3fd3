"""``urcdm-study prepare``: render a study's cases into its folder, once, and check what they show.

Each case is read through the slide layer and encoded afresh (``study_app.preparation.rendering``), whole
slides are re-tiled one way (``study_app.preparation.whole_slides``), and the served files are checked for
anything but their pixels that separates the classes (``study_app.preparation.parity``): such a study is refused
unless it opts out. The folder's layout and how it is opened again: ``study_app.preparation.prepared``.

Preparing again is cheap and safe: cases are rendered once; if the study file changes what readers see
after answers were recorded, preparing refuses instead of silently changing the cases under them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from evaluation.crops import plain_numbers
from evaluation.inputs import list_images, open_images
from evaluation.pipeline import RunOptions, plan_crops
from study_app.access import opaque_id
from study_app.preparation.cases import (
    TRUTHS,
    Case,
    balance_pool,
    check_assignable,
    check_no_repeats,
)
from study_app.preparation.encodings import Encoding
from study_app.preparation.parity import parity_report, served_attributes
from study_app.preparation.prepared import (
    ANSWERS,
    ENTRY,
    MANIFEST,
    PAGE,
    PARITY,
    SLIDE_PARITY,
    STATIC,
    PreparedStudy,
    load_key,
    open_prepared,
    read_manifest,
    rendered_as_expected,
    settings_digest,
    study_design,
)
from study_app.preparation.rendering import (
    pad,
    padding_plan,
    render_case,
    source_side,
    write_served,
)
from study_app.preparation.study import Source, Study
from study_app.preparation.whole_slides import (
    SlideLayout,
    equalise_tiles,
    plan_layout,
    render_slides,
)
from study_app.store.database import AnswerStore
from study_app.store.private_files import write_private
from urcdm.errors import UserError

# The server entry is an st.App so that the study's own routes (the authenticated case images) and
# its security headers sit in front of Streamlit's; the page script is what each browser session runs.
_SCRIPTS = {
    ENTRY: '''"""Server entry of one reader study, written by `urcdm-study prepare`: Streamlit plus the study's routes."""
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from study_app.web.routes import SecurityHeaders, study_routes

app = st.App("reader_page.py", routes=study_routes(Path(__file__).resolve().parent),
             middleware=[Middleware(SecurityHeaders)])
''',
    PAGE: '''"""The reader study's pages, written by `urcdm-study prepare`."""
from pathlib import Path

from study_app.web.app import main

main(Path(__file__).resolve().parent)
''',
}


def prepare(study: Study, progress: bool = True) -> PreparedStudy:
    workdir = study.workdir
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"{workdir}: exists and is not a folder (set `workdir` in the study file)")
    created = not workdir.exists()
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return _prepare(study, workdir, progress)
    except BaseException:
        if created:  # a study that could not be prepared leaves nothing half-made, nor its key ...
            kept = {PARITY, SLIDE_PARITY}  # ... but the parity report that says why it was refused
            for path in workdir.iterdir():
                if path.name in kept:
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            if not any(workdir.iterdir()):
                workdir.rmdir()
        raise


def _prepare(study: Study, workdir: Path, progress: bool) -> PreparedStudy:
    key = load_key(workdir)
    manifest = read_manifest(workdir)
    if manifest is not None and rendered_as_expected(workdir, manifest, study):
        current = "display_side" in manifest and "display_format" in manifest
        if current or AnswerStore(workdir / ANSWERS).all_answers():
            if study.path and manifest.get("study_file") != str(study.path.resolve()):
                # A study folder copied or moved with its study file: the app must read this file (its
                # readers, design, access), not the one the cases were first prepared from.
                _write_json(workdir / MANIFEST, {**manifest, "study_file": str(study.path.resolve())})
            _write_entry(workdir, study)
            prepared = open_prepared(workdir)
            study_design(study, prepared.cases)  # the design may have changed; the cases have not
            return prepared
        # Rendered by an older version (every case resized to display.size, or JPEG by default) and
        # not yet answered: rendered again below, at source resolution and in the blind encoding.
        # Once answered, kept as it is.
        print(f"{workdir}: cases were rendered by an older version; rendering them again "
              f"(source resolution, format {study.display.format})", file=sys.stderr)
    if manifest is not None and AnswerStore(workdir / ANSWERS).all_answers():
        raise UserError(f"{study.path}: the cases changed (arms, sources, seed or display) after readers answered; "
                        f"restore the study file, or give the new study its own `workdir`")

    cases: list[Case] = []
    sides: dict[str, int] = {}  # case id -> source side (what 1:1 would show)
    for arm in study.arms:
        for truth in TRUTHS:
            source = arm.source(truth)
            for path, crop, side in _source_items(source, f"{arm.name}/{truth}", study.seed):
                cases.append(Case(opaque_id(key, "case", arm.name, truth, path, crop), arm.name, truth, path, crop,
                                  whole_slide=source.whole))
                if not source.whole:
                    sides[cases[-1].id] = side
    dropped = {}
    if study.balance == "equal":
        cases, dropped = balance_pool(cases, study.seed)
        for arm, count in dropped.items():
            if count:
                print(f"{arm}: {count} case(s) left out so that real and synthetic are equal", file=sys.stderr)
    check_assignable(cases, study.cases_per_reader, study.balance)
    study_design(study, cases)  # before minutes of rendering: the ids, and so the assignment, are known now
    smallest = min((sides[case.id] for case in cases if case.id in sides), default=study.display.size)
    side = study.display.side(smallest)
    larger = sum(sides.get(case.id, 0) > side for case in cases)
    if larger:
        print(f"display side {side} px ({'the display.size cap' if side < smallest else 'the smallest case'}): "
              f"{larger} of {len(sides)} cases are larger and are shown downsampled", file=sys.stderr)
    encoding = study.display.encoding(side)
    slides = [case for case in cases if case.whole_slide]
    layout = plan_layout(slides, study.whole_slides, study.display) if slides else None
    rendered = _render_all(cases, study, workdir, progress, side, encoding, layout)
    _write_json(workdir / MANIFEST, {"study_file": str(study.path.resolve()) if study.path else None,
                                     "settings": settings_digest(study, side, encoding.format), "display_side": side,
                                     "display_format": encoding.format,
                                     "source_side": smallest, "left_out_for_balance": dropped,
                                     **({"whole_slide_layout": layout.as_dict()} if layout else {}),
                                     "cases": [c.as_dict() for c in rendered]})
    _write_entry(workdir, study)
    prepared = PreparedStudy(study, workdir, key, rendered, dropped, side, layout, encoding)
    _note_short_assignments(prepared)
    return prepared


def _note_short_assignments(prepared: PreparedStudy) -> None:
    """Say at once when readers get fewer cases of an arm than ``cases_per_reader`` promises, and why."""
    study = prepared.study
    if study.cases_per_reader is None or not study.split_shared:
        return  # without split, check_assignable has made sure every reader gets the number asked for
    for reader in sorted(study.readers) or ["any reader"]:
        shown = [case.arm for case in prepared.reader_cases(reader)]
        short = {arm.name: shown.count(arm.name) for arm in study.arms if shown.count(arm.name) < study.cases_per_reader}
        if short:
            counts = ", ".join(f"{count} of arm {arm!r}" for arm, count in short.items())
            print(f"note: reader {reader} gets {counts}, not cases_per_reader: {study.cases_per_reader}: with "
                  f"shared_images: split each image the arms share is shown in one arm only, and a balanced arm then "
                  f"leaves out one case of the other truth too; give each arm its own images to honour it",
                  file=sys.stderr)
            return


def _source_items(source: Source, label: str, seed: int) -> list[tuple[str, tuple[float, ...] | None, int]]:
    """(file, crop, source side) triples: every image of an image source, or the seeded crops of a
    slide source (x, y, size and the frame they are cut from, as in ``evaluation.crops.CROP_COLUMNS``);
    the side is what the case has at source resolution (``rendering.source_side``)."""
    if source.whole:  # opened (and a bad one named) when the layout is planned
        return [(str(path.resolve()), None, 0) for path in list_images(source.spec)]
    if source.crops is None:
        # A study's cases come from every slide it names: a bad one is replaced or dropped from the YAML.
        images, _ = open_images(list_images(source.spec), label=label,
                                skip_hint=" (replace them, or leave them out of the study file)")
        return [(str(Path(image.path).resolve()), None, source_side(None, None, (image.width, image.height)))
                for image in images]
    plan = plan_crops(source.spec, label, RunOptions(protocol=source.crops, n=source.n, seed=seed))
    items = []
    for crop in plan.crops:
        image = plan.images[int(crop[0])]
        numbers = plain_numbers(crop[1:])
        items.append((str(Path(image.path).resolve()), numbers,
                      source_side(numbers, source.crops, (image.width, image.height))))
    return items


def _render_all(cases: list[Case], study: Study, workdir: Path, progress: bool, side: int, encoding: Encoding,
                layout: SlideLayout | None) -> list[Case]:
    # Rendered beside the final folder and swapped in whole, so a crash never leaves a half-rendered set.
    temp = Path(tempfile.mkdtemp(dir=workdir, prefix=".static.", suffix=".partial"))
    try:
        slides = [case for case in cases if case.whole_slide]
        tile_encoding = layout.encoding(study.display.quality) if layout else None
        tiled = render_slides(slides, layout, tile_encoding, temp, progress) if slides else []
        if tiled:
            report = equalise_tiles(tiled, tile_encoding, temp)
            _write_json(workdir / SLIDE_PARITY, report)
            _check_parity(report, "the whole-slide tiles", workdir / SLIDE_PARITY, study)
        rendered = []
        for case in tqdm([c for c in cases if not c.whole_slide], desc="rendering cases", unit="image",
                         disable=not progress or len(slides) == len(cases)):
            try:
                content_id = render_case(case, encoding, temp, side)
            except UserError:
                raise
            except Exception as exc:  # a reader failure is the file's, reported by name
                raise UserError(f"{case.source}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            rendered.append(Case(**{**case.as_dict(), "crop": case.crop, "content_id": content_id}))
        check_no_repeats(rendered + tiled, study.split_shared)
        rendered = _equal_lengths_checked(rendered, study, encoding, temp, workdir) if rendered else []
        by_id = {case.id: case for case in rendered + tiled}
        rendered = [by_id[case.id] for case in cases]
        old = workdir / STATIC
        if old.exists():
            shutil.rmtree(old)
        os.replace(temp, old)
        return rendered
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _equal_lengths_checked(cases: list[Case], study: Study, encoding: Encoding, folder: Path,
                           workdir: Path) -> list[Case]:
    """Bring every served file to one byte length (a compressed encoding is padded; the blind one
    has it already), so that each case's image id is that of its final bytes; write the parity
    report of the final files beside the cases (server side), and refuse a study it finds leaking."""
    paths = [folder / f"{case.id}{encoding.suffix}" for case in cases]
    if not encoding.blind:
        target, segments = padding_plan([path.stat().st_size for path in paths], encoding.container)
    done, entries = [], []
    for case, path in zip(cases, paths):
        data = path.read_bytes()
        if not encoding.blind:
            data = pad(data, target, encoding.container, segments)
        done.append(Case(**{**case.as_dict(), "crop": case.crop, "image_id": write_served(path, data)}))
        entries.append((case.truth, served_attributes(data)))
    report = parity_report(entries, groups=[case.arm for case in cases])
    _write_json(workdir / PARITY, report)
    _check_parity(report, "the served images", workdir / PARITY, study)
    return done


def _check_parity(report: dict, what: str, path: Path, study: Study) -> None:
    """Refuse a study whose served bytes separate the classes, unless it accepts that (``display.parity: warn``)."""
    if not report["separating"]:
        return
    leaks = ", ".join(report["separating"][:4]) + (f" and {len(report['separating']) - 4} more"
                                                   if len(report["separating"]) > 4 else "")
    message = (f"{what} differ by class in {leaks} (see {path}): a reader's browser receives every byte, so "
               f"readers could tell real from synthetic without looking")
    if study.display.parity == "warn":
        print(f"warning: {message}; accepted because the study sets display.parity: warn", file=sys.stderr)
        return
    raise UserError(f"{message}; serve them uncompressed (display.format: raw), or accept it with display.parity: warn")


def _write_json(path: Path, payload: dict) -> None:
    write_private(path, json.dumps(payload, indent=1))


def _write_entry(workdir: Path, study: Study) -> None:
    for name, text in _SCRIPTS.items():
        path = workdir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
