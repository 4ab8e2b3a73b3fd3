"""Whole-slide arms: real WSIs and synthetic pyramids re-tiled one way, tiles only to assigned
readers, and a reader reading a whole slide in chromium (OpenSeadragon) with the furthest zoom stored."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from browser import CHROMEDRIVER, CHROMIUM, MISSING, headless_chromium
from conftest import tissue_image
from PIL import Image

from study_app.cli import main as study_cli
from study_app.preparation.prepare import open_prepared
from study_app.preparation.prepare import prepare as prepare_study
from study_app.preparation.study import load_study
from study_app.preparation.whole_slides import tissue_square
from study_app.store.database import AnswerStore
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import open_slide

CODES = {"r1": "one-code", "r2": "two-code"}


def write_study(folder: Path, real_data: Path, slides: bool = True, **extra) -> Path:
    """Real: the Aperio region (0.499 um/px) and a second real slide written at 0.25 um/px, both to be
    resampled; synthetic: two pyramids at 0.5 um/px, as a sampler writes them."""
    (folder / "real").mkdir(parents=True)
    (folder / "synthetic").mkdir()
    (folder / "real" / "aperio.svs").symlink_to(real_data / "slides" / "cmu-1-small-region.svs")
    study = {"title": "Whole slides", "seed": 3, "answers": {"confidence": True},
             "arms": [{"name": "wsi", "real": {"slides": "real/", "whole": True},
                       "synthetic": {"slides": "synthetic/", "whole": True}}],
             "access": {"readers": [{"id": r, "code": c} for r, c in CODES.items()]},
             "admin": {"secret_env": "URCDM_TEST_ADMIN"}, "cases_per_reader": 2, "shared_cases": False, **extra}
    (folder / "study.yaml").write_text(yaml.safe_dump(study))
    if not slides:
        return folder / "study.yaml"
    write_pyramid(ArraySource(tissue_image(2600, 2300, 1)), folder / "real" / "scan.tiff", tile=512, quality=80,
                  mpp=0.25, progress=False)
    for seed in (2, 3):
        write_pyramid(ArraySource(tissue_image(1200, 1300, seed)), folder / "synthetic" / f"s{seed}.tiff", tile=256,
                      quality=90, mpp=0.5, progress=False)
    return folder / "study.yaml"


@pytest.fixture(scope="module")
def prepared_study(real_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("whole-study")
    study_file = write_study(folder, real_data)
    prepare_study(load_study(study_file), progress=False)  # the command's own path is tested below
    return open_prepared(load_study(study_file).workdir)


def test_every_slide_is_retiled_one_way(prepared_study):
    layout, static = prepared_study.slide_layout, prepared_study.image_folder
    assert layout.mpp == 0.5  # the synthetic slides' mpp: real ones resampled to it
    # The smallest side any slide has at 0.5 um/px: the 2300-px side of the 0.25 um/px scan.
    assert layout.side == min(int(2300 * 0.25 / 0.5), int(2220 * 0.499 / 0.5), 1200)
    tiles = {case.truth + case.id: {p.relative_to(static / f"{case.id}_files").as_posix(): p.stat().st_size
                                    for p in (static / f"{case.id}_files").rglob("*.png")}
             for case in prepared_study.cases}
    first = next(iter(tiles.values()))
    assert first and layout.format == "raw"  # uncompressed tiles: their bytes depend on their size alone
    assert all(names == first for names in tiles.values()), "tile names and byte lengths differ between cases"
    report = json.loads((prepared_study.workdir / "parity_slides.json").read_text())
    assert report["separating"] == [] and report["per_class"] == {"real": 2, "synthetic": 2}
    assert all(attribute["constant"] for attribute in report["attributes"].values())


def test_a_real_slides_tiles_are_its_tissue_at_the_studys_mpp(prepared_study):
    """The full-resolution tiles of the 0.25 um/px slide equal a direct read of its tissue square
    shrunk 2x (the resampling), within the source's JPEG error (the tiles themselves are lossless)."""
    layout = prepared_study.slide_layout
    case = next(c for c in prepared_study.cases if c.source.endswith("scan.tiff"))
    x, y, side = tissue_square(case, layout)
    assert side == pytest.approx(layout.side * 2)
    folder = prepared_study.image_folder / f"{case.id}_files"
    top = max(int(p.name) for p in folder.iterdir())
    tile = np.asarray(Image.open(folder / str(top) / "1_1.png").convert("RGB"), dtype=int)
    with open_slide(case.source) as slide:  # tile (1, 1) starts at 254 - 1 in the tiled square
        direct = slide.read_region(x + 253 * 2, y + 253 * 2, 256 * 2, 256 * 2, out_size=(256, 256)).astype(int)
    assert tile.shape == direct.shape and np.abs(tile - direct).mean() < 4


@pytest.mark.parametrize("change, message", [
    ({"arms": [{"name": "a", "real": {"slides": "real/", "whole": True}, "synthetic": {"images": "synthetic/"}}]},
     "whole: true` on one side only"),
    ({"arms": [{"name": "a", "real": {"slides": "real/", "whole": True}, "synthetic": {"slides": "synthetic/"}}]},
     "synthetic: `slides` needs `crops`"),
    ({"whole_slides": {"mpp": 0.01}}, "whole_slides.mpp"),
])
def test_bad_whole_slide_studies_get_one_error_line(real_data, tmp_path, change, message, capsys):
    study_file = write_study(tmp_path, real_data, slides=False, **change)
    assert study_cli(["prepare", str(study_file)]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and stderr.startswith("error:") and len(stderr.strip().splitlines()) == 1


def test_a_slide_without_mpp_is_named(real_data, tmp_path, capsys):
    study_file = write_study(tmp_path, real_data)
    (tmp_path / "real" / "scan.tiff").unlink()
    shutil.copy(real_data / "slides" / "kidney-48-5.tif", tmp_path / "real" / "kidney.tif")  # records no mpp
    assert study_cli(["prepare", str(study_file)]) == 2
    assert "kidney.tif: records no microns per pixel" in capsys.readouterr().err
    assert not (tmp_path / "study.study" / "static").exists()


def test_tiles_only_to_assigned_readers_and_a_whole_slide_read_in_chromium(prepared_study, tmp_path):
    pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait
    from test_study_browser import WAIT_S, StudyServer, click_button, free_port, log_in

    from study_app.web.gate import current_gate

    gate = current_gate(prepared_study.workdir)
    r1 = gate.prepared.reader_cases("r1")
    others = [c for c in gate.prepared.cases if c.id not in {case.id for case in r1}]
    assert others, "shared_cases is off, so r1 does not have every case"
    server = StudyServer(prepared_study.study.path, free_port())
    server.start()
    driver = headless_chromium()
    try:
        token = gate.open_session("reader", "r1")

        def status(path: str) -> int:
            try:
                with urllib.request.urlopen(server.url + path, timeout=10) as response:
                    return response.status
            except urllib.error.HTTPError as error:
                return error.code

        tile = "0/0_0.png"
        assert status(f"case-tiles/{r1[0].id}_files/{tile}?session={token}") == 200
        assert status(f"case-tiles/{r1[0].id}_files/{tile}") == 403
        assert status(f"case-tiles/{others[0].id}_files/{tile}?session={token}") == 403
        assert status(f"case-tiles/{r1[0].id}_files/0/0_0.jpg?session={token}") == 403  # not the study's tile format
        assert status(f"case-image/{r1[0].id}.png?session={token}") == 403  # a whole slide comes as tiles only
        assert status("viewer-lib/openseadragon.min.js") == 200

        log_in(driver, server.url, reader="r1", code=CODES["r1"])
        click_button(driver, "Begin")
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)
        opened = ("const o = document.querySelector('.urcdm-osd'), r = document.querySelector('.urcdm-reader');"
                  "return o && o.classList.contains('shown') && !r.classList.contains('busy') && o.dataset.case")
        first = wait.until(lambda d: d.execute_script(opened))
        assert first == r1[0].id
        wait.until(lambda d: d.execute_script(
            "return performance.getEntriesByType('resource').some(e => e.name.includes('/case-tiles/'))"))
        home = driver.execute_script("const v = document.querySelector('.urcdm-reader').__urcdmView;"
                                     "return v.viewer.maxZoom")
        actions = webdriver.ActionChains(driver)
        for key in ("+", "+", "+", "s", "4"):
            actions = actions.send_keys(key)
        actions.perform()
        wait.until(lambda d: d.execute_script(opened) not in (None, first, False))
        stored = AnswerStore(prepared_study.store_path).get("r1", first)
        assert stored.answer == "synthetic" and stored.confidence == 4
        assert home == 1  # the whole slide in view: max_zoom is relative to it
        assert stored.max_zoom == pytest.approx(1.5 ** 3, rel=0.05)
    finally:
        driver.quit()
        server.stop()


def test_tiles_lost_while_the_server_was_away_load_when_it_is_back(prepared_study):
    """OpenSeadragon marks a failed tile missing for good: a reader who zoomed in while the server was
    down kept the coarser level (blur, a class cue) after the page reconnected. Now they load again."""
    pytest.importorskip("selenium.webdriver")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(MISSING)
    from selenium.webdriver.support.ui import WebDriverWait
    from test_study_browser import WAIT_S, StudyServer, click_button, free_port, log_in

    server = StudyServer(prepared_study.study.path, free_port())
    server.start()
    driver = headless_chromium()
    try:
        log_in(driver, server.url, reader="r2", code=CODES["r2"])
        click_button(driver, "Begin")
        wait = WebDriverWait(driver, WAIT_S, poll_frequency=0.1)
        osd = ("(() => { const r = document.querySelector('.urcdm-reader');"
               " return r && r.__urcdmView && r.__urcdmView.viewer.osd; })()")
        wait.until(lambda d: d.execute_script(f"const o = {osd}; return !!(o && o.world.getItemAt(0) && "
                                              "o.world.getItemAt(0).getFullyLoaded())"))
        driver.execute_script(f"""window.failed = []; window.loaded = []; const o = {osd};
            o.addHandler('tile-load-failed', e => window.failed.push(e.tile.getUrl()));
            o.addHandler('tile-loaded', e => window.loaded.push(e.tile.getUrl()));""")
        server.process.kill()  # the server just vanishes
        server.process.wait(10)
        wait.until(lambda d: d.execute_script("return document.querySelector('.urcdm-reader.offline') !== null"))
        driver.execute_script(f"{osd}.viewport.zoomBy(4, null, true);")
        wait.until(lambda d: d.execute_script("return window.failed.length > 0"))
        failed = set(driver.execute_script("return window.failed"))
        server.start()
        wait.until(lambda d: d.execute_script("return document.querySelector('.urcdm-reader.offline') === null"))
        wait.until(lambda d: failed <= set(d.execute_script("return window.loaded")))
    finally:
        driver.quit()
        server.stop()
