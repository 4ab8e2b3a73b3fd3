"""A prepared study's folder, as the server and the commands open it (``open_prepared``).

    WORKDIR/
      cases.json       server side only: case id -> arm, truth, source, crop, image and content ids;
                       the display side every case is rendered at (the smallest source side, capped)
                       and the encoding (study_app.preparation.encodings)
      parity.json      server side only: what the served files show per class (study_app.preparation.parity)
      static/          the case images, <case id>.png (.jpg), and whole slides' tiles,
                       <case id>_files/<level>/<col>_<row>.png; served only to readers assigned them (study_app.web.routes)
      answers.sqlite   every answer (study_app.store.database)
      study.key        random key behind the opaque ids and session tokens
      sessions.sqlite  login sessions and wrong-code counts (study_app.web.sessions)
      reader_app.py    the server entry (Streamlit plus the study's routes); reader_page.py, the pages

Every file that holds truth, answers, sessions or the key is mode 0600 (``study_app.store.private_files``);
files an older version left wider are narrowed when the study is opened.

A manifest records what its cases were rendered from: a digest of the study's case settings, with
the display side and encoding they resolved to. The study file must still give the same digest, or
the folder no longer shows what the file says (``study_app.preparation.prepare`` renders it again, or refuses
once readers have answered). Manifests of older versions lack the side or the encoding; their
digests are recomputed as those versions computed them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from study_app.preparation.cases import TRUTHS, Case, assign_cases
from study_app.preparation.designs import design_report
from study_app.preparation.encodings import Encoding, resolve_format
from study_app.preparation.study import Study, load_study
from study_app.preparation.whole_slides import SlideLayout
from study_app.store.private_files import narrow, private_database
from urcdm.errors import UserError

MANIFEST, STATIC, ANSWERS, KEY, ENTRY = "cases.json", "static", "answers.sqlite", "study.key", "reader_app.py"
PARITY, SLIDE_PARITY = "parity.json", "parity_slides.json"
PAGE = "reader_page.py"

@dataclass
class PreparedStudy:
    study: Study
    workdir: Path
    key: bytes
    cases: list[Case]
    dropped: dict[str, int]
    display_side: int | None = None  # the side every case is served at; None: the display cap (older manifests)
    slide_layout: SlideLayout | None = None  # how every whole-slide case is tiled; None: the study has none
    encoding: Encoding = Encoding("jpeg")  # how the crops are served (older manifests: JPEG)

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
        return reader_assignment(self.study, self.cases, reader)

    @property
    def image_folder(self) -> Path:
        return self.workdir / STATIC

    def image_url_path(self, case: Case, session: str) -> str:
        """Where a reader's browser fetches the case (``study_app.web.routes``): only with their live session."""
        return f"/case-image/{case.id}{self.encoding.suffix}?session={session}"

    def slide_view(self, case: Case, session: str) -> dict | None:
        """What the viewer needs to read a whole-slide case (``study_app.web.routes`` serves its tiles), or None."""
        if not case.whole_slide or self.slide_layout is None:
            return None
        layout = self.slide_layout
        return {"tiles": f"/case-tiles/{case.id}_files/", "suffix": layout.suffix, "query": f"?session={session}",
                "width": layout.side,
                "height": layout.side, "tile_size": layout.tile_size, "overlap": layout.overlap, "mpp": layout.mpp}

    def summary(self) -> dict:
        arms = {arm.name: {t: sum(1 for c in self.cases if c.arm == arm.name and c.truth == t) for t in TRUTHS}
                for arm in self.study.arms}
        return {"workdir": str(self.workdir), "cases": len(self.cases), "arms": arms, "left_out_for_balance": self.dropped,
                "readers": "open enrolment" if self.study.open_enrolment else sorted(self.study.readers),
                "display": self.display_settings(), **study_design(self.study, self.cases)}

    def display_settings(self) -> dict:
        """How the cases are served: ``side`` (pixels, every case), ``cap`` (``display.size``), format
        (resolved: raw, png or jpeg), quality, and the bytes of every case where they are fixed (raw)."""
        shown = self.study.display
        side = self.display_side if self.display_side is not None else shown.size
        return {"side": side, "cap": shown.size, "format": self.encoding.format, "quality": shown.quality,
                "bytes_per_case": self.encoding.bytes_per_image(side) if self.cases else None}


def reader_assignment(study: Study, cases: Sequence[Case], reader: str) -> list[Case]:
    """The reader's cases in the order shown, under the study's design."""
    return assign_cases(cases, reader, study.seed, study.cases_per_reader, study.balance, study.shared_cases,
                        study.split_shared, study.reader_block(reader))


def study_design(study: Study, cases: Sequence[Case]) -> dict:
    """What the design allows (``designs.design_report``); UserError when an analysable unit is too small."""
    readers = list(study.readers)
    assigned = {reader: reader_assignment(study, cases, reader) for reader in readers or ["any reader"]}
    return design_report(study.design, study.groups, [arm.name for arm in study.arms], readers, assigned,
                         study.split_shared)


def settings_digest(study: Study, side: int | None = None, image_format: str | None = None) -> str:
    """The identity of what readers are shown: the study's case settings, with the display cap
    replaced by the side the cases are rendered at (``side``; default the cap, which is also how a
    manifest written before display sides existed was computed) and ``format: auto`` by the format
    it resolved to. So raising a cap that does not bind changes nothing, and lowering one below the
    smallest source side changes the cases."""
    settings = study.case_settings()
    settings["display"] = {**settings["display"], "size": study.display.size if side is None else side,
                           **({"format": image_format} if image_format else {})}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _expected_side(study: Study, manifest: dict) -> int:
    """The display side ``study`` gets from the sources the manifest was prepared from (their
    smallest side, recorded); a manifest from before display sides were recorded was rendered at
    the cap. Sources that changed change the digest anyway."""
    smallest = manifest.get("source_side")
    return study.display.size if smallest is None else study.display.side(smallest)


def _expected_format(study: Study, manifest: dict, side: int) -> str:
    """The encoding ``study`` resolves to at ``side``; a manifest from before encodings were resolved
    (no ``display_format``) was rendered as JPEG unless the study named another format."""
    if "display_format" not in manifest and study.display.format == "auto":
        return "jpeg"
    return resolve_format(study.display.format, side)


def _expected_digest(study: Study, manifest: dict) -> str:
    side = _expected_side(study, manifest)
    return settings_digest(study, side, _expected_format(study, manifest, side))


def rendered_as_expected(workdir: Path, manifest: dict, study: Study) -> bool:
    """The manifest is of this study as its file says now, and every case's files are there."""
    if manifest["settings"] != _expected_digest(study, manifest):
        return False
    side = _expected_side(study, manifest)
    suffix = Encoding(_expected_format(study, manifest, side)).suffix

    def present(case: dict) -> bool:
        if case.get("whole_slide"):
            return (workdir / STATIC / f"{case['id']}_files").is_dir()
        return (workdir / STATIC / f"{case['id']}{suffix}").is_file()
    return all(present(case) for case in manifest["cases"])


def load_key(workdir: Path) -> bytes:
    path = workdir / KEY
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(32))
    return path.read_bytes()


def _narrow_private_files(workdir: Path) -> None:
    """Files written 0644 by older versions: narrowed to 0600 when the study is opened."""
    narrow(*(workdir / name for name in (MANIFEST, PARITY, SLIDE_PARITY, KEY)))
    for database in (ANSWERS, "sessions.sqlite"):
        if (workdir / database).exists():
            private_database(workdir / database)


def read_manifest(workdir: Path) -> dict | None:
    path = workdir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: unreadable case manifest ({exc}); move the study folder aside and prepare again") from None


def open_prepared(workdir: Path) -> PreparedStudy:
    """Load a prepared study as the app does: the study file named in the manifest must still match."""
    manifest = read_manifest(workdir)
    if manifest is None:
        raise UserError(f"{workdir}: not a prepared study (run `urcdm-study prepare STUDY.yaml`)")
    study = load_study(manifest["study_file"])
    side = _expected_side(study, manifest)
    image_format = _expected_format(study, manifest, side)
    if settings_digest(study, side, image_format) != manifest["settings"]:
        raise UserError(f"{manifest['study_file']}: changed since its cases were prepared; run `urcdm-study prepare` again")
    _narrow_private_files(workdir)
    layout = manifest.get("whole_slide_layout")
    return PreparedStudy(study, workdir, load_key(workdir), [Case.from_dict(c) for c in manifest["cases"]],
                         manifest.get("left_out_for_balance", {}), manifest.get("display_side", side),
                         SlideLayout(**layout) if layout else None, Encoding(image_format, study.display.quality))
