"""``urcdm-study demo``: a small study built from embedded data, so a newcomer sees the app working.

Real: crops of scikit-image's IHC micrograph (human colon, 512 x 512). "Synthetic": crops of the
same micrograph degraded two ways, blurred and stain-shifted (``evaluation.demo_data.degraded_versions``),
one arm each. A reader must never meet the same tissue as real and as synthetic (a blurred copy of a
real crop they have just seen would give the answer away), so the micrograph is cut into its four
256-px quadrants, each written as it is (no mirrored or tiled region) as a pyramid slide, and each
quadrant serves one side of one arm only: the arms' real crops come from the top two, their
synthetic crops from the bottom two. No image is shared by two arms either, so every reader gets
``cases_per_reader`` cases of each arm, the same ones for every reader in their own order: a fully
crossed design per arm, which MRMC analyses as it is.

The crops are 128 px at full resolution (URCDM level 2: one slide pixel per crop pixel), so the
viewer's 1:1 shows the micrograph's own pixels. Two demo readers and a fresh organiser secret are
printed; the study file holds only hashes (the demo keeps its secret beside it, in
``organiser-secret.txt``, so running the demo again restarts the same study with its answers).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import yaml

from evaluation.demo_data import degraded_versions
from study_app.access import hash_secret
from urcdm.errors import OutputExistsError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.sample_data import immunohistochemistry_micrograph

DEMO_READERS = {"reader-1": "demo", "reader-2": "demo"}
QUADRANT = 256  # px: each slide is one quadrant of the 512^2 micrograph
CROP_SIZE = 128  # px, at full resolution: a quarter of a quadrant per case
CASES_PER_READER = 8  # per arm: 4 real and 4 synthetic
DEMO_WORKDIR = "study-run"  # the prepared study: cases, answers, sessions
# slide name -> (the image it is cut from, the top-left corner of its quadrant)
SLIDES = {"real-top-left": ("real", (0, 0)), "real-top-right": ("real", (QUADRANT, 0)),
          "blurred-bottom-right": ("blurred", (QUADRANT, QUADRANT)),
          "stain-shift-bottom-left": ("stain-shift", (0, QUADRANT))}
# arm -> (its real slide, its synthetic slide): four quadrants, no two of them overlapping
ARMS = {"BLURRED-ARM": ("real-top-left", "blurred-bottom-right"),
        "STAIN-ARM": ("real-top-right", "stain-shift-bottom-left")}


def _is_demo(folder: Path) -> bool:
    """What ``build_demo`` makes and nothing else: its slides, its study file and secret, and what
    preparing and running it adds (its work folder). A user's file among them: not a demo."""
    ours = {"slides", "study.yaml", "organiser-secret.txt", DEMO_WORKDIR}
    names = {path.name for path in folder.iterdir()}
    return "slides" in names and names <= ours


def build_demo(out: Path, fresh: bool = False, crops: int = 8) -> tuple[Path, str]:
    """Write the demo slides and ``study.yaml`` under ``out``; returns (study file, organiser secret).

    An existing demo is reused (answers and all) unless ``fresh``, which deletes ``out`` first.
    ``crops``: crops per slide and arm.
    """
    study_file, secret_file = out / "study.yaml", out / "organiser-secret.txt"
    if study_file.exists() and secret_file.exists() and not fresh:
        return study_file, secret_file.read_text().strip()
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder; choose another --out")
    if out.exists() and any(out.iterdir()):
        # --fresh deletes a demo, never a folder of the user's (``--out . --fresh`` would have emptied it).
        if not _is_demo(out):
            raise OutputExistsError(f"{out}: exists and is not a demo study; choose another --out")
        shutil.rmtree(out)
    real = immunohistochemistry_micrograph()
    images = {"real": real, **degraded_versions(real)}
    slides = out / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    for name, (image, (x, y)) in SLIDES.items():
        quadrant = np.ascontiguousarray(images[image][y:y + QUADRANT, x:x + QUADRANT])
        write_pyramid(ArraySource(quadrant), slides / f"{name}.tiff", tile=256, quality=95, mpp=0.5, overwrite=True)
    secret = secrets.token_urlsafe(12)
    # Fixed-size crops at URCDM level 2 (full resolution: 128 slide pixels each), so the study's
    # display side is 128 (display.size only caps it) and every case is shown one slide pixel per pixel.
    crop_spec = {"n": crops, "level": 2, "size": CROP_SIZE}
    study = {
        "title": "Real or synthetic? (demo)",
        "instructions": "Each image is a crop of an immunohistochemistry micrograph. Zoom in with the mouse wheel, "
                        "drag to pan, then decide whether the image is **real** or **synthetic**.",
        "seed": 1,
        "design": "crossed",  # both readers read the same cases of an arm: OR (and the U-statistics) analyse it
        "cases_per_reader": CASES_PER_READER,
        "display": {"size": 512},  # format auto: uncompressed, so the served bytes say nothing of the class
        "answers": {"confidence": True},
        "arms": [{"name": arm, "real": {"slides": f"slides/{real_slide}.tiff", "crops": crop_spec},
                  "synthetic": {"slides": f"slides/{synthetic_slide}.tiff", "crops": crop_spec}}
                 for arm, (real_slide, synthetic_slide) in ARMS.items()],
        "access": {"readers": [{"id": reader, "code": hash_secret(code)} for reader, code in DEMO_READERS.items()]},
        "admin": {"secret_hash": hash_secret(secret)},
        "workdir": DEMO_WORKDIR,
    }
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return study_file, secret
