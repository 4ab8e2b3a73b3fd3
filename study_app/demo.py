"""``urcdm-study demo``: a small study built from embedded data, so a newcomer sees the app working.

Real: 256 px crops of scikit-image's IHC micrograph (human colon, 512 x 512), written as it is (no
mirrored or tiled region) as a pyramid slide. "Synthetic": crops of the same micrograph degraded two
ways, blurred and stain-shifted (``evaluation.demo_data.degraded_versions``), one arm each. The crops
are fixed-size at full resolution (URCDM level 2: one slide pixel per crop pixel), so every case is
served at 256 px and the viewer's 1:1 shows the micrograph's own pixels. Two demo readers and a fresh
organiser secret are printed; the study file holds only hashes (the demo keeps its secret beside it,
in ``organiser-secret.txt``, so running the demo again restarts the same study with its answers).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import yaml

from evaluation.demo_data import degraded_versions
from study_app.access import hash_secret
from urcdm.errors import OutputExistsError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.sample_data import immunohistochemistry_micrograph

DEMO_READERS = {"reader-1": "demo", "reader-2": "demo"}
_ARMS = {"BLURRED-ARM": "blurred", "STAIN-ARM": "stain-shift"}
CROP_SIZE = 256  # px, at full resolution: a quarter of the 512^2 micrograph per case


def build_demo(out: Path, fresh: bool = False, crops: int = 8) -> tuple[Path, str]:
    """Write the demo slides and ``study.yaml`` under ``out``; returns (study file, organiser secret).

    An existing demo is reused (answers and all) unless ``fresh``, which deletes ``out`` first.
    ``crops``: crops per slide and arm.
    """
    study_file, secret_file = out / "study.yaml", out / "organiser-secret.txt"
    if study_file.exists() and secret_file.exists() and not fresh:
        return study_file, secret_file.read_text().strip()
    if out.exists() and any(out.iterdir()):
        if not fresh and not (out / "slides").is_dir():
            raise OutputExistsError(f"{out}: exists and is not a demo study; choose another --out")
        shutil.rmtree(out)
    real = immunohistochemistry_micrograph()
    degraded = degraded_versions(real)
    slides = out / "slides"
    slides.mkdir(parents=True, exist_ok=True)
    write_pyramid(ArraySource(real), slides / "real.tiff", tile=256, quality=95, mpp=0.5, overwrite=True)
    for name in _ARMS.values():
        write_pyramid(ArraySource(degraded[name]), slides / f"{name}.tiff", tile=256, quality=95, mpp=0.5, overwrite=True)
    secret = secrets.token_urlsafe(12)
    # Fixed-size crops at URCDM level 2 (full resolution: 256 slide pixels each), so the study's
    # display side is 256 (display.size only caps it) and every case is shown one slide pixel per pixel.
    crop_spec = {"n": crops, "level": 2, "size": CROP_SIZE}
    study = {
        "title": "Real or synthetic? (demo)",
        "instructions": "Each image is a crop of an immunohistochemistry micrograph. Zoom in with the mouse wheel, "
                        "drag to pan, then decide whether the image is **real** or **synthetic**.",
        "seed": 1,
        "cases_per_reader": 6,
        "display": {"size": 512, "format": "jpeg", "quality": 92},
        "answers": {"confidence": True},
        "shared_images": "split",  # both arms draw their real crops from the same slide
        "arms": [{"name": arm, "real": {"slides": "slides/real.tiff", "crops": crop_spec},
                  "synthetic": {"slides": f"slides/{name}.tiff", "crops": crop_spec}} for arm, name in _ARMS.items()],
        "access": {"readers": [{"id": reader, "code": hash_secret(code)} for reader, code in DEMO_READERS.items()]},
        "admin": {"secret_hash": hash_secret(secret)},
        "workdir": "study-run",
    }
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return study_file, secret
