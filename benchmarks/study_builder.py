"""The study the reader-study benchmarks build: noise-tissue pyramids (never whole in memory) and a
one-arm study of crops of them. Shared by bench_study and bench_study_readers, which import it and
never each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from urcdm.pyramid import write_pyramid


class NoiseTissue:
    """A pixel source for a large synthetic slide that never exists in memory as a whole."""

    def __init__(self, size: int, seed: int):
        self.width = self.height = size
        self.seed = seed

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, x, y])
        base = np.array([200, 140, 190], dtype=np.int16)
        return np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)


def build_study(root: Path, slide_size: int, display: int, cases: int, crops: dict | None = None,
                image_format: str = "jpeg", **settings) -> Path:
    """Two noise-tissue pyramids ("real", "fake") and a one-arm study of ``cases`` crops of them;
    ``crops`` replaces the default crop spec, ``settings`` add top-level study settings. JPEG (the
    default here, as 4096-px crops would be) is accepted although its coded length leaks: this
    measures speed, not blinding."""
    for name, seed in (("real", 1), ("fake", 2)):
        write_pyramid(NoiseTissue(slide_size, seed), root / f"{name}.tiff", tile=512, quality=90, mpp=0.5, overwrite=True)
    # pfid crops covering display..2*display px of the slide: the slide shrunk to a side in [S/2, S].
    crops = crops or {"n": cases // 2, "size": display, "mode": "pfid", "min": max(display, slide_size // 2),
                      "max": slide_size}
    shown = {"size": display, "format": image_format, "quality": 92, "parity": "warn"}
    study = {"title": "bench", "seed": 0, "display": shown, **settings,
             "arms": [{"name": "ARM-1", "real": {"slides": str(root / "real.tiff"), "crops": crops},
                       "synthetic": {"slides": str(root / "fake.tiff"), "crops": crops}}],
             "access": {"open": True}, "admin": {"secret_env": "URCDM_BENCH_ADMIN"}}
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path
