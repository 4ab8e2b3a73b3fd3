"""Shared fixtures: real data from ../shared/data (skipped with a reason when absent) and synthetic
slides made on the fly from scikit-image's bundled IHC micrograph (real tissue texture, so JPEG
quality figures mean something)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import data as skimage_data

REPO_ROOT = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).resolve().parent / "plugins"  # tiny feature extractors, as module:factory plug-ins
TINY_EXTRACTOR = "tiny_extractors:colour_texture"
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))


def test_data_dir() -> Path:
    return Path(os.environ.get("URCDM_TEST_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    root = test_data_dir()
    if not (root / "slides").is_dir() or not (root / "tiles").is_dir():
        pytest.skip(f"real test data not found at {root} (set URCDM_TEST_DATA)")
    return root


@pytest.fixture(scope="session")
def training_slides(real_data, tmp_path_factory) -> Path:
    """A folder linking two real slides (an Aperio region and a TCGA tissue section) to train on."""
    folder = tmp_path_factory.mktemp("train-slides")
    for name in ("cmu-1-small-region.svs", "tcga-cr-7395-01a-01-ts1.svs"):
        os.symlink(real_data / "slides" / name, folder / name)
    return folder


def micro_config(folder: Path) -> Path:
    """The tiny unets on a smaller slide: 3 x 3 last-level patches instead of 9 x 9 (14 patches a
    slide instead of 91), written as a config YAML as a user would. For the tests that sample whole
    slides several times over (resume, torchrun, the notebook chain)."""
    from urcdm.config import LevelSpec, tiny

    small = tiny()
    small = small.__class__(**{**small.__dict__, "name": "micro",
                               "levels": (LevelSpec(176, 1), LevelSpec(128, 2), LevelSpec(64, 3))})
    small.save(folder / "micro.yaml")
    return folder / "micro.yaml"


@pytest.fixture(scope="session")
def micro_config_file(tmp_path_factory) -> Path:
    return micro_config(tmp_path_factory.mktemp("micro-config"))


def tissue_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An RGB uint8 image of real-looking tissue texture: IHC tiles mirrored and shifted at random."""
    base = skimage_data.immunohistochemistry()
    rng = np.random.default_rng(seed)
    tile = base.shape[0]
    rows = []
    for _ in range(-(-height // tile)):
        row = []
        for _ in range(-(-width // tile)):
            block = base[:, ::-1] if rng.random() < 0.5 else base
            row.append(np.rot90(block, k=int(rng.integers(4))))
        rows.append(np.concatenate(row, axis=1))
    return np.ascontiguousarray(np.concatenate(rows, axis=0)[:height, :width])


@pytest.fixture(scope="session")
def tissue_rgb() -> np.ndarray:
    return tissue_image(1900, 1500)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def tile_lists(real_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """List files of the labelled real tiles: (tissue tiles, background tiles)."""
    rows = [line.split(",") for line in (real_data / "tiles" / "labels.csv").read_text().split()[1:]]
    lists = []
    for label in ("tissue", "background"):
        listing = tmp_path / f"{label}.txt"
        listing.write_text("".join(f"{real_data / 'tiles' / name}\n" for name, tag in rows if tag == label))
        lists.append(listing)
    return lists[0], lists[1]


@pytest.fixture(scope="session")
def demo_study_template(tmp_path_factory) -> tuple[Path, str]:
    """The embedded demo study, built and prepared once: (its folder, the organiser secret)."""
    from study_app.preparation.demo import build_demo
    from study_app.preparation.prepare import prepare
    from study_app.preparation.study import load_study

    out = tmp_path_factory.mktemp("study-demo")
    study_file, secret = build_demo(out, crops=6)
    prepare(load_study(study_file), progress=False)
    return out, secret


@pytest.fixture
def study_workdir(demo_study_template, tmp_path) -> Path:
    """A private copy of the prepared demo study's folder (its own answers database)."""
    import shutil

    workdir = tmp_path / "study-run"
    shutil.copytree(demo_study_template[0] / "study-run", workdir)
    return workdir


@pytest.fixture(scope="session", autouse=True)
def private_index_cache(tmp_path_factory):
    """Training-position indexes go to a per-run cache, never the user's ~/.cache."""
    import os

    os.environ["URCDM_CACHE"] = str(tmp_path_factory.mktemp("urcdm-cache"))
