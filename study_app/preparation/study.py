"""A reader study, defined in YAML and validated field by field (pure: reads only the YAML).

    title: Real or synthetic?
    instructions: |
      Each image is a crop of an H&E slide. Decide whether it is real or generated.
    seed: 7
    design: crossed               # crossed: every reader reads the same cases of an arm, each in their own order
                                  # split-plot (with groups: G): readers in G groups (in the order listed),
                                  # each group reading its own balanced block of every arm's cases
                                  # random: each reader a random subset of cases_per_reader (any MRMC design)
    cases_per_reader: 20          # per arm; default: every case the balance (and the block) allows
    balance: equal                # equal (as many real as synthetic) | none
    shared_images: refuse         # arms showing the same image: refuse | split (each reader sees it in one arm)
    show_magnification: true      # then each arm needs `magnification`
    display: {size: 1024, format: auto, quality: 92, parity: refuse}
                                  # size is a cap: every case is shown at one side, the smallest source side
                                  # among the cases up to the cap (1:1 = one source pixel). format: auto (raw up
                                  # to 2048 px, else jpeg) | raw (uncompressed PNG, blind) | png | jpeg; parity:
                                  # refuse (default) or warn when the served bytes separate real from synthetic
    answers: {confidence: true}   # real / synthetic, plus confidence 1-5
    arms:
      - name: URCDM
        magnification: 20x
        real: {images: real-crops/}                 # folder, glob, list file or one image
        synthetic:                                  # or slides plus a crop spec (evaluation crops)
          slides: samples/*.tiff
          crops: {n: 40, level: 2, size: 1024, min_tissue: 0.5}   # level, mpp, or span (level-0 px per crop)
          # or {n: 40, mode: pfid, size: 1024, min: 2048}: urcdm-eval's pfid law, min/max the
          # sides the image is resized to (here: 1024 px cut from the image shrunk to 2048 px or more)
      - name: whole slides                          # read in the deep-zoom viewer, pan and zoom
        real: {slides: wsi/*.svs, whole: true}
        synthetic: {slides: samples/*.tiff, whole: true}
    whole_slides: {mpp: 0.25, max_side: 41344}      # optional: every slide is re-tiled at this mpp (default:
                                                    # the synthetic slides'), as one square of one side
    access:
      readers:                                      # or `open: true` (any reader id)
        - {id: path-01, code: "scrypt:..."}         # `urcdm-study hash-secret`; plain codes also work
      session_hours: 12                             # a login lasts this long (logging out or a new code ends it)
    admin: {secret_env: URCDM_STUDY_ADMIN}          # or {secret_hash: "scrypt:..."}; never plain text
    workdir: study-run/                             # default: <study file stem>.study/ beside it

Any mistake is one ``UserError`` naming the field, e.g. ``arms[1].synthetic.crops.level``.
Relative paths are resolved against the study file's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from evaluation.crops import CropProtocol
from study_app.access import is_hashed_secret
from study_app.preparation.encodings import FORMATS, Encoding, resolve_format
from study_app.preparation.fields import Fields
from study_app.statistics.records import LABELS as TRUTHS
from urcdm.errors import UserError

PARITY_CHOICES = ("refuse", "warn")
DESIGNS = ("crossed", "split-plot", "random")
MAX_DISPLAY = 8192


@dataclass(frozen=True)
class Source:
    """Where one side of an arm comes from: image files as they are, or crops drawn from slides."""

    spec: str
    crops: CropProtocol | None = None
    n: int | None = None
    whole: bool = False  # whole slides, read in the deep-zoom viewer

    def describe(self) -> str:
        if self.whole:
            return f"whole slides {self.spec}"
        return self.spec if self.crops is None else f"{self.n} crops ({self.crops.describe()}) of {self.spec}"


@dataclass(frozen=True)
class Arm:
    name: str
    real: Source
    synthetic: Source
    magnification: str | None = None

    def source(self, truth: str) -> Source:
        return self.real if truth == "real" else self.synthetic

    @property
    def whole_slides(self) -> bool:
        return self.real.whole


@dataclass(frozen=True)
class WholeSlides:
    """How whole-slide cases are re-tiled: one mpp (None: the synthetic slides') and a cap on the side."""

    mpp: float | None = None
    max_side: int | None = None


@dataclass(frozen=True)
class Display:
    """How cases are served. ``size`` is the display cap (the key keeps its old name): a case is
    shown at its source resolution up to it. Served images must have one size in both classes, so
    the whole study has one display side, the smallest source side among its cases, capped here
    (``side``); a study of equal-sized crops is then shown exactly 1:1, one source pixel per pixel.

    ``format`` may be ``auto``, resolved once the side is known (``encoding``); ``parity`` says what
    ``prepare`` does when the served bytes separate the classes: refuse the study, or warn and go on."""

    size: int = 1024
    format: str = "auto"
    quality: int = 92
    parity: str = "refuse"

    def encoding(self, side: int) -> Encoding:
        """How images ``side`` px a side are served under these settings."""
        return Encoding(resolve_format(self.format, side), self.quality)

    def side(self, smallest_source_side: int) -> int:
        """The study's display side, given the smallest source side among its cases."""
        return max(1, min(self.size, int(smallest_source_side)))


@dataclass(frozen=True)
class Study:
    title: str
    instructions: str
    arms: tuple[Arm, ...]
    readers: dict[str, str]          # reader id -> access code (hashed or plain); empty when open
    open_enrolment: bool
    admin_secret_env: str | None
    admin_secret_hash: str | None
    workdir: Path
    seed: int = 0
    cases_per_reader: int | None = None
    balance: str = "equal"
    design: str = "crossed"
    groups: int | None = None  # split-plot only
    split_shared: bool = False
    show_magnification: bool = False
    confidence: bool = False
    session_hours: float = 12.0
    display: Display = field(default_factory=Display)
    whole_slides: WholeSlides = field(default_factory=WholeSlides)
    path: Path | None = None

    def arm(self, name: str) -> Arm:
        return next(arm for arm in self.arms if arm.name == name)

    @property
    def shared_cases(self) -> bool:
        """Every reader (of a group) reads the same subset: crossed and split-plot designs."""
        return self.design != "random"

    def reader_block(self, reader: str) -> tuple[int, int] | None:
        """(group, groups) of a split-plot reader: readers are dealt to the groups in the order listed, so
        the groups stay as even as the list allows; None in the other designs."""
        if self.design != "split-plot":
            return None
        listed = list(self.readers)
        return (listed.index(reader) % self.groups if reader in listed else 0), self.groups

    def case_settings(self) -> dict:
        """Everything that decides which images are shown and how: a change here invalidates the cases.

        Sources are named relative to the study file's folder, so moving a study folder whole keeps
        its identity.
        """
        base = self.path.parent if self.path else None
        shown = {"size": self.display.size, "format": self.display.format, "quality": self.display.quality}
        return {"seed": self.seed, "display": shown, "split_shared": self.split_shared,
                **({"whole_slides": vars(self.whole_slides)} if any(a.whole_slides for a in self.arms) else {}),
                "arms": [{"name": a.name, **{t: _source_settings(a.source(t), base) for t in TRUTHS}} for a in self.arms]}


def _source_settings(source: Source, base: Path | None) -> dict:
    spec = os.path.relpath(source.spec, base) if base is not None and os.path.isabs(source.spec) else source.spec
    settings = {"spec": spec, "n": source.n, "crops": source.crops.as_dict() if source.crops else None}
    # Only when set: the identity of a study prepared before whole slides existed stays the same.
    return settings | {"whole": True} if source.whole else settings


def load_study(path: str | Path) -> Study:
    given = Path(path)
    if given.is_dir():
        raise UserError(f"{given}: is a folder; give the study file (its .yaml) in it")
    if not given.is_file():
        raise UserError(f"{given}: no such study file")
    # Absolute from here on: the study's sources, folder and identity must not depend on the
    # working folder or on how its path was spelled on the command line.
    path = given.resolve()
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return parse_study(values, base=path.parent, default_workdir=path.with_suffix(".study"), path=path)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def parse_study(values, base: Path, default_workdir: Path, path: Path | None = None) -> Study:
    top = Fields(values, "")
    top.reject_unknown({"title", "instructions", "seed", "design", "groups", "cases_per_reader", "balance", "shared_cases",
                        "shared_images",
                        "show_magnification", "display", "answers", "arms", "access", "admin", "workdir",
                        "whole_slides"})
    arms_list = top.get("arms", list, required=True)
    if not arms_list:
        raise UserError("arms: at least one arm is needed")
    arms = tuple(_parse_arm(item, f"arms[{i}]", base) for i, item in enumerate(arms_list))
    names = [arm.name for arm in arms]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UserError(f"arms: the name {duplicate!r} is used twice")

    show_magnification = top.get("show_magnification", bool, False)
    if show_magnification:
        missing = next((i for i, arm in enumerate(arms) if not arm.magnification), None)
        if missing is not None:
            raise UserError(f"arms[{missing}].magnification: required when show_magnification is true")

    title = top.get("title", str, "Real or synthetic?")
    instructions = top.get("instructions", str, "Decide for each image whether it is a real slide or a synthetic one.")
    for key, text in (("title", title), ("instructions", instructions)):
        leaked = next((n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text)), None)
        if leaked:
            raise UserError(f"{key}: mentions the arm name {leaked!r}, which readers must not see")

    shared_images = top.get("shared_images", str, "refuse")
    if shared_images not in ("refuse", "split"):
        raise UserError(f"shared_images: expected refuse or split, got {shared_images!r}")
    balance = top.get("balance", str, "equal")
    if balance not in ("equal", "none"):
        raise UserError(f"balance: expected equal or none, got {balance!r}")
    cases_per_reader = top.get("cases_per_reader", int)
    if cases_per_reader is not None and cases_per_reader < 1:
        raise UserError("cases_per_reader: must be at least 1")
    if cases_per_reader is not None and balance == "equal" and cases_per_reader % 2:
        raise UserError(f"cases_per_reader: {cases_per_reader} cannot be split equally into real and synthetic")

    answers = top.sub("answers")
    answers.reject_unknown({"confidence"})
    access = top.sub("access", required=True)
    readers, open_enrolment = _parse_access(access)
    design, groups = _parse_design(top, open_enrolment)
    session_hours = float(access.get("session_hours", (int, float), 12))
    if not 0 < session_hours <= 24 * 14:
        raise UserError(f"{access.name('session_hours')}: must be more than 0 and at most 336 (two weeks)")
    secret_env, secret_hash = _parse_admin(top.sub("admin", required=True))
    workdir = top.get("workdir", str)
    return Study(
        title=title, instructions=instructions, arms=arms, readers=readers, open_enrolment=open_enrolment,
        admin_secret_env=secret_env, admin_secret_hash=secret_hash,
        workdir=_resolve(workdir, base) if workdir else default_workdir,
        seed=top.get("seed", int, 0), cases_per_reader=cases_per_reader, balance=balance,
        design=design, groups=groups, split_shared=shared_images == "split",
        show_magnification=show_magnification, session_hours=session_hours,
        confidence=answers.get("confidence", bool, False), display=_parse_display(top.sub("display")),
        whole_slides=_parse_whole_slides(top.sub("whole_slides")), path=path)


def _parse_design(top: Fields, open_enrolment: bool) -> tuple[str, int | None]:
    """``design`` (and ``groups``); the older ``shared_cases: false`` still means ``design: random``."""
    design, groups = top.get("design", str), top.get("groups", int)
    shared = top.get("shared_cases", bool)
    if design is None:
        design = "random" if shared is False else "crossed"
    elif design not in DESIGNS:
        raise UserError(f"design: expected one of {', '.join(DESIGNS)}, got {design!r}")
    elif shared is not None and shared != (design != "random"):
        raise UserError(f"shared_cases: {str(shared).lower()} contradicts design: {design}; give design alone")
    if design != "split-plot":
        if groups is not None:
            raise UserError("groups: only for design: split-plot")
        return design, None
    if groups is None or groups < 2:
        raise UserError("groups: design: split-plot needs groups: 2 or more")
    if open_enrolment:
        raise UserError("design: split-plot needs the `access.readers` list, so that readers are dealt evenly to "
                        "the groups; open enrolment cannot know them in advance")
    return design, groups


def _resolve(spec: str, base: Path) -> Path:
    path = Path(spec).expanduser()
    return path if path.is_absolute() else base / path


def _parse_arm(values, where: str, base: Path) -> Arm:
    arm = Fields(values, where)
    arm.reject_unknown({"name", "real", "synthetic", "magnification"})
    name = arm.get("name", str, required=True).strip()
    if not name:
        raise UserError(f"{arm.name('name')}: empty")
    magnification = arm.get("magnification", (str, int, float))
    real, synthetic = _parse_source(arm, "real", base), _parse_source(arm, "synthetic", base)
    if real.whole != synthetic.whole:
        raise UserError(f"{where}: `whole: true` on one side only; an arm shows whole slides on both sides or on neither")
    return Arm(name=name, real=real, synthetic=synthetic, magnification=None if magnification is None else str(magnification))


def _parse_source(arm: Fields, truth: str, base: Path) -> Source:
    source = arm.sub(truth, required=True)
    source.reject_unknown({"images", "slides", "crops", "whole"})
    images, slides = source.get("images", str), source.get("slides", str)
    if (images is None) == (slides is None):
        raise UserError(f"{source.where}: give exactly one of `images` (used as they are) or `slides` "
                        f"(with `crops`, or `whole: true`)")
    if images is not None:
        if "crops" in source.values or "whole" in source.values:
            key = "crops" if "crops" in source.values else "whole"
            raise UserError(f"{source.name(key)}: only for `slides`, not for `images`")
        return Source(str(_resolve(images, base)))
    if source.get("whole", bool, False):
        if "crops" in source.values:
            raise UserError(f"{source.where}: give `crops` or `whole: true`, not both")
        return Source(str(_resolve(slides, base)), whole=True)
    if "crops" not in source.values:
        raise UserError(f"{source.where}: `slides` needs `crops` (crops drawn from them) or `whole: true` (read whole)")
    crops = source.sub("crops", required=True)
    crops.reject_unknown({"n", "mode", "size", "level", "mpp", "span", "min", "max", "min_tissue"})
    n = crops.get("n", int, required=True)
    if n < 1:
        raise UserError(f"{crops.name('n')}: must be at least 1")
    level, mpp, span = crops.get("level", int), crops.get("mpp", (int, float)), crops.get("span", int)
    mode = crops.get("mode", str, "fixed" if (level, mpp, span) != (None, None, None) else "pfid")
    size = crops.get("size", int, 1024)
    try:
        protocol = CropProtocol(mode=mode, patch_size=size, image_size=size, min_size=crops.get("min", int),
                                max_size=crops.get("max", int), level=level, mpp=mpp, span=span,
                                min_tissue=float(crops.get("min_tissue", (int, float), 0.0)))
    except UserError as exc:
        raise UserError(f"{crops.where}: {exc}") from None
    return Source(str(_resolve(slides, base)), protocol, n)


def _parse_access(access: Fields) -> tuple[dict[str, str], bool]:
    access.reject_unknown({"readers", "open", "session_hours"})
    open_enrolment = access.get("open", bool, False)
    entries = access.get("readers", list, [])
    if open_enrolment == bool(entries):
        raise UserError(f"{access.where}: give either a `readers` list (id + code) or `open: true`")
    readers: dict[str, str] = {}
    for i, item in enumerate(entries):
        reader = Fields(item, f"{access.name('readers')}[{i}]")
        reader.reject_unknown({"id", "code"})
        reader_id = str(reader.get("id", (str, int), required=True)).strip()
        code = str(reader.get("code", (str, int), required=True))
        if not reader_id or not code:
            raise UserError(f"{reader.where}: empty id or code")
        if reader_id in readers:
            raise UserError(f"{reader.name('id')}: reader {reader_id!r} is listed twice")
        readers[reader_id] = code
    return readers, open_enrolment


def _parse_admin(admin: Fields) -> tuple[str | None, str | None]:
    if "secret" in admin.values:
        raise UserError(f"{admin.name('secret')}: a plain-text admin secret is not allowed in the study file; use "
                        "secret_env (an environment variable) or secret_hash (`urcdm-study hash-secret`)")
    admin.reject_unknown({"secret_env", "secret_hash"})
    env, hashed = admin.get("secret_env", str), admin.get("secret_hash", str)
    if (env is None) == (hashed is None):
        raise UserError(f"{admin.where}: give exactly one of secret_env or secret_hash")
    if hashed is not None and not is_hashed_secret(hashed):
        raise UserError(f"{admin.name('secret_hash')}: not a hash made by `urcdm-study hash-secret`")
    return env, hashed


def _parse_whole_slides(values: Fields) -> WholeSlides:
    values.reject_unknown({"mpp", "max_side"})
    mpp, max_side = values.get("mpp", (int, float)), values.get("max_side", int)
    if mpp is not None and not 0.05 <= mpp <= 100:
        raise UserError(f"{values.name('mpp')}: microns per pixel between 0.05 and 100, got {mpp}")
    if max_side is not None and max_side < 256:
        raise UserError(f"{values.name('max_side')}: at least 256 px, got {max_side}")
    return WholeSlides(None if mpp is None else float(mpp), max_side)


def _parse_display(display: Fields) -> Display:
    display.reject_unknown({"size", "format", "quality", "parity"})
    size = display.get("size", int, 1024)
    if not 64 <= size <= MAX_DISPLAY:
        raise UserError(f"{display.name('size')}: must be between 64 and {MAX_DISPLAY} px, got {size}")
    image_format = display.get("format", str, "auto").lower()
    if image_format not in FORMATS:
        raise UserError(f"{display.name('format')}: expected one of {', '.join(FORMATS)}, got {image_format!r}")
    quality = display.get("quality", int, 92)
    if not 1 <= quality <= 100:
        raise UserError(f"{display.name('quality')}: must be between 1 and 100")
    parity = display.get("parity", str, "refuse")
    if parity not in PARITY_CHOICES:
        raise UserError(f"{display.name('parity')}: expected refuse or warn, got {parity!r}")
    return Display(size, image_format, quality, parity)
