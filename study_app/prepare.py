"""A study's working folder: the rendered case images, their manifest, the answers and the app entry.

    WORKDIR/
      cases.json       server side only: case id -> arm, truth, source, crop, image and content ids;
                       the display side every case is rendered at (the smallest source side, capped)
      parity.json      server side only: what the served files show per class (study_app.parity)
      static/          the case images, <case id>.jpg, and whole slides' tiles, <case id>_files/<level>/<col>_<row>.jpg;
                       served only to readers assigned them (study_app.web)
      answers.sqlite   every answer (study_app.store)
      study.key        random key behind the opaque ids and session tokens (mode 0600)
      sessions.sqlite  login sessions and wrong-code counts (study_app.sessions)
      reader_app.py    the server entry (Streamlit plus the study's routes); reader_page.py, the pages

Preparing again is cheap and safe: cases are rendered once; if the study file changes what readers see
after answers were recorded, preparing refuses instead of silently changing the cases under them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from evaluation.crops import plain_numbers
from evaluation.inputs import list_images, open_images
from evaluation.pipeline import RunOptions, plan_crops
from study_app.access import opaque_id
from study_app.cases import TRUTHS, Case, assign_cases, balance_pool, check_assignable, check_no_repeats
from study_app.parity import parity_report, served_attributes
from study_app.rendering import pad, padding_plan, render_case, source_side, write_served
from study_app.store import AnswerStore
from study_app.study import Source, Study, load_study
from study_app.whole_slides import SlideLayout, equalise_tiles, plan_layout, render_slides
from urcdm.errors import UserError

MANIFEST, STATIC, ANSWERS, KEY, ENTRY = "cases.json", "static", "answers.sqlite", "study.key", "reader_app.py"
PARITY, SLIDE_PARITY = "parity.json", "parity_slides.json"
PAGE = "reader_page.py"
# The server entry is an st.App so that the study's own routes (the authenticated case images) and
# its security headers sit in front of Streamlit's; the page script is what each browser session runs.
_SCRIPTS = {
    ENTRY: '''"""Server entry of one reader study, written by `urcdm-study prepare`: Streamlit plus the study's routes."""
from pathlib import Path

import streamlit as st
from starlette.middleware import Middleware

from study_app.web import SecurityHeaders, study_routes

app = st.App("reader_page.py", routes=study_routes(Path(__file__).resolve().parent),
             middleware=[Middleware(SecurityHeaders)])
''',
    PAGE: '''"""The reader study's pages, written by `urcdm-study prepare`."""
from pathlib import Path

from study_app.app import main

main(Path(__file__).resolve().parent)
''',
}


@dataclass
class PreparedStudy:
    study: Study
    workdir: Path
    key: bytes
    cases: list[Case]
    dropped: dict[str, int]
    display_side: int | None = None  # the side every case is served at; None: the display cap (older manifests)
    slide_layout: SlideLayout | None = None  # how every whole-slide case is tiled; None: the study has none

    @property
    def store_path(self) -> Path:
        return self.workdir / ANSWERS

    @property
    def entry(self) -> Path:
        return self.workdir / ENTRY

    def case(self, case_id: str) -> Case:
        return self._by_id[case_id]

    def __post_init__(self):
        self._by_id = {case.id: case for case in self.cases}

    def reader_cases(self, reader: str) -> list[Case]:
        s = self.study
        return assign_cases(self.cases, reader, s.seed, s.cases_per_reader, s.balance, s.shared_cases, s.split_shared)

    @property
    def image_folder(self) -> Path:
        return self.workdir / STATIC

    def image_url_path(self, case: Case, session: str) -> str:
        """Where a reader's browser fetches the case (``study_app.web``): only with their live session."""
        return f"/case-image/{case.id}{self.study.display.suffix}?session={session}"

    def slide_view(self, case: Case, session: str) -> dict | None:
        """What the viewer needs to read a whole-slide case (``study_app.web`` serves its tiles), or None."""
        if not case.whole_slide or self.slide_layout is None:
            return None
        layout = self.slide_layout
        return {"tiles": f"/case-tiles/{case.id}_files/", "query": f"?session={session}", "width": layout.side,
                "height": layout.side, "tile_size": layout.tile_size, "overlap": layout.overlap, "mpp": layout.mpp}

    def summary(self) -> dict:
        arms = {arm.name: {t: sum(1 for c in self.cases if c.arm == arm.name and c.truth == t) for t in TRUTHS}
                for arm in self.study.arms}
        return {"workdir": str(self.workdir), "cases": len(self.cases), "arms": arms, "left_out_for_balance": self.dropped,
                "readers": "open enrolment" if self.study.open_enrolment else sorted(self.study.readers),
                "cases_per_reader": len(self.reader_cases("any reader")), "display": self.display_settings()}

    def display_settings(self) -> dict:
        """How the cases are served: ``side`` (pixels, every case), ``cap`` (``display.size``), format, quality."""
        shown = self.study.display
        side = self.display_side if self.display_side is not None else shown.size
        return {"side": side, "cap": shown.size, "format": shown.format, "quality": shown.quality}


def settings_digest(study: Study, side: int | None = None) -> str:
    """The identity of what readers are shown: the study's case settings, with the display cap
    replaced by the side the cases are rendered at (``side``; default the cap, which is also how a
    manifest written before display sides existed was computed). So raising a cap that does not
    bind changes nothing, and lowering one below the smallest source side changes the cases."""
    settings = study.case_settings()
    settings["display"] = {**settings["display"], "size": study.display.size if side is None else side}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _expected_side(study: Study, manifest: dict) -> int:
    """The display side ``study`` gets from the sources the manifest was prepared from (their
    smallest side, recorded); a manifest from before display sides were recorded was rendered at
    the cap. Sources that changed change the digest anyway."""
    smallest = manifest.get("source_side")
    return study.display.size if smallest is None else study.display.side(smallest)


def _load_key(workdir: Path) -> bytes:
    path = workdir / KEY
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def _read_manifest(workdir: Path) -> dict | None:
    path = workdir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable case manifest ({exc}); move the study folder aside and prepare again") from None


def open_prepared(workdir: Path) -> PreparedStudy:
    """Load a prepared study as the app does: the study file named in the manifest must still match."""
    manifest = _read_manifest(workdir)
    if manifest is None:
        raise UserError(f"{workdir}: not a prepared study (run `urcdm-study prepare STUDY.yaml`)")
    study = load_study(manifest["study_file"])
    side = _expected_side(study, manifest)
    if settings_digest(study, side) != manifest["settings"]:
        raise UserError(f"{manifest['study_file']}: changed since its cases were prepared; run `urcdm-study prepare` again")
    layout = manifest.get("whole_slide_layout")
    return PreparedStudy(study, workdir, _load_key(workdir), [Case.from_dict(c) for c in manifest["cases"]],
                         manifest.get("left_out_for_balance", {}), manifest.get("display_side", side),
                         SlideLayout(**layout) if layout else None)


def prepare(study: Study, progress: bool = True) -> PreparedStudy:
    workdir = study.workdir
    if workdir.exists() and not workdir.is_dir():
        raise UserError(f"{workdir}: exists and is not a folder (set `workdir` in the study file)")
    workdir.mkdir(parents=True, exist_ok=True)
    key = _load_key(workdir)
    manifest = _read_manifest(workdir)
    if (manifest is not None and manifest["settings"] == settings_digest(study, _expected_side(study, manifest))
            and _images_present(workdir, manifest, study)):
        if "display_side" in manifest or AnswerStore(workdir / ANSWERS).all_answers():
            _write_entry(workdir, study)
            return open_prepared(workdir)
        # Rendered before display sides existed (every case resized to display.size) and not yet
        # answered: rendered again below at source resolution. Once answered, kept as it is.
        print(f"{workdir}: cases were resized to display.size; rendering them again at source resolution",
              file=sys.stderr)
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
    smallest = min((sides[case.id] for case in cases if case.id in sides), default=study.display.size)
    side = study.display.side(smallest)
    larger = sum(sides.get(case.id, 0) > side for case in cases)
    if larger:
        print(f"display side {side} px ({'the display.size cap' if side < smallest else 'the smallest case'}): "
              f"{larger} of {len(sides)} cases are larger and are shown downsampled", file=sys.stderr)
    slides = [case for case in cases if case.whole_slide]
    layout = plan_layout(slides, study.whole_slides) if slides else None
    rendered = _render_all(cases, study, workdir, progress, side, layout)
    _write_json(workdir / MANIFEST, {"study_file": str(study.path.resolve()) if study.path else None,
                                     "settings": settings_digest(study, side), "display_side": side,
                                     "source_side": smallest, "left_out_for_balance": dropped,
                                     **({"whole_slide_layout": layout.as_dict()} if layout else {}),
                                     "cases": [c.as_dict() for c in rendered]})
    _write_entry(workdir, study)
    return PreparedStudy(study, workdir, key, rendered, dropped, side, layout)


def _source_items(source: Source, label: str, seed: int) -> list[tuple[str, tuple[float, ...] | None, int]]:
    """(file, crop, source side) triples: every image of an image source, or the seeded crops of a
    slide source (x, y, size and the frame they are cut from, as in ``evaluation.crops.CROP_COLUMNS``);
    the side is what the case has at source resolution (``rendering.source_side``)."""
    if source.whole:  # opened (and a bad one named) when the layout is planned
        return [(str(path.resolve()), None, 0) for path in list_images(source.spec)]
    if source.crops is None:
        images, _ = open_images(list_images(source.spec), label=label)
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


def _images_present(workdir: Path, manifest: dict, study: Study) -> bool:
    def present(case: dict) -> bool:
        if case.get("whole_slide"):
            return (workdir / STATIC / f"{case['id']}_files").is_dir()
        return (workdir / STATIC / f"{case['id']}{study.display.suffix}").is_file()
    return all(present(case) for case in manifest["cases"])


def _render_all(cases: list[Case], study: Study, workdir: Path, progress: bool, side: int,
                layout: SlideLayout | None) -> list[Case]:
    # Rendered beside the final folder and swapped in whole, so a crash never leaves a half-rendered set.
    temp = Path(tempfile.mkdtemp(dir=workdir, prefix=".static.", suffix=".partial"))
    try:
        slides = [case for case in cases if case.whole_slide]
        tiled = render_slides(slides, layout, study.display, temp, progress) if slides else []
        if tiled:
            _write_json(workdir / SLIDE_PARITY, equalise_tiles(tiled, temp))
        rendered = []
        for case in tqdm([c for c in cases if not c.whole_slide], desc="rendering cases", unit="image",
                         disable=not progress or len(slides) == len(cases)):
            try:
                content_id = render_case(case, study.display, temp, side)
            except UserError:
                raise
            except Exception as exc:  # a reader failure is the file's, reported by name
                raise UserError(f"{case.source}: cannot be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
            rendered.append(Case(**{**case.as_dict(), "crop": case.crop, "content_id": content_id}))
        check_no_repeats(rendered + tiled, study.split_shared)
        rendered = _equal_lengths_checked(rendered, study, temp, workdir) if rendered else []
        by_id = {case.id: case for case in rendered + tiled}
        rendered = [by_id[case.id] for case in cases]
        old = workdir / STATIC
        if old.exists():
            shutil.rmtree(old)
        os.replace(temp, old)
        return rendered
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _equal_lengths_checked(cases: list[Case], study: Study, folder: Path, workdir: Path) -> list[Case]:
    """Pad every served file to one byte length (each case's image id is then that of its final
    bytes); write the parity report of the final files beside the cases (server side), and refuse a
    study it finds leaking."""
    paths = [folder / f"{case.id}{study.display.suffix}" for case in cases]
    target, segments = padding_plan([path.stat().st_size for path in paths], study.display.format)
    padded, entries = [], []
    for case, path in zip(cases, paths):
        data = pad(path.read_bytes(), target, study.display.format, segments)
        padded.append(Case(**{**case.as_dict(), "crop": case.crop, "image_id": write_served(path, data)}))
        entries.append((case.truth, served_attributes(data)))
    report = parity_report(entries)
    _write_json(workdir / PARITY, report)
    if report["separating"]:
        raise UserError(f"the served images differ by class in {', '.join(report['separating'])} "
                        f"(see {workdir / PARITY}); readers could tell real from synthetic without looking")
    return padded


def _write_json(path: Path, payload: dict) -> None:
    temp = path.with_name(f".{path.name}.partial")
    temp.write_text(json.dumps(payload, indent=1))
    os.replace(temp, path)


def _write_entry(workdir: Path, study: Study) -> None:
    for name, text in _SCRIPTS.items():
        path = workdir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
