"""Deep Zoom tiles and ``urcdm view``: tiles against OpenSlide's tiler and against direct reads,
the page in chromium, and the error contract."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import numpy as np
import openslide
import pytest
import tifffile
from openslide.deepzoom import DeepZoomGenerator

from browser import CHROMEDRIVER, CHROMIUM, MISSING, headless_chromium
from urcdm.deepzoom.tiles import DeepZoomSlide
from urcdm.deepzoom.views import SlideView
from urcdm.errors import SlideError, UserError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import open_slide
from urcdm.slides.image_slide import TiffSlide


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory, tissue_rgb):
    path = tmp_path_factory.mktemp("dz") / "tissue.tiff"
    write_pyramid(ArraySource(tissue_rgb), path, tile=256, quality=90, mpp=0.5, progress=False)
    return path


def tile_l0_box(generator: DeepZoomGenerator, level: int, col: int, row: int) -> tuple[float, ...]:
    """A tile's rectangle in level-0 pixels, from the Deep Zoom layout alone (power-of-two levels,
    tile_size, overlap), independently of how the tiler reads it."""
    scale = 2 ** (generator.level_count - 1 - level)
    tile, overlap = 254, 1
    x = col * tile - (overlap if col else 0)
    y = row * tile - (overlap if row else 0)
    return x * scale, y * scale


def test_our_reader_gives_openslides_tiles(pyramid):
    """Through SlideView (tifffile) the tiler sees what it sees through OpenSlide, on the same file."""
    reference = DeepZoomGenerator(openslide.OpenSlide(str(pyramid)), tile_size=254, overlap=1)
    ours = DeepZoomGenerator(SlideView(TiffSlide(pyramid)), tile_size=254, overlap=1)
    assert ours.level_tiles == reference.level_tiles and ours.get_dzi("jpeg") == reference.get_dzi("jpeg")
    for level in range(reference.level_count):
        cols, rows = reference.level_tiles[level]
        for address in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
            expected = np.asarray(reference.get_tile(level, address).convert("RGB"), dtype=int)
            got = np.asarray(ours.get_tile(level, address), dtype=int)
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= 1, (level, address)  # one JPEG decoder vs another


@pytest.mark.parametrize("reader", ["openslide", "tifffile"])
def test_tiles_at_each_level_equal_a_direct_read(pyramid, reader):
    slide = open_slide(pyramid) if reader == "openslide" else TiffSlide(pyramid)
    deep_zoom = DeepZoomSlide(slide)
    generator = deep_zoom.generator
    assert generator.level_dimensions[-1] == slide.dimensions
    checked = 0
    coarsest = slide.level_downsamples[-1]
    for level in range(generator.level_count):
        scale = 2 ** (generator.level_count - 1 - level)
        if scale > 2 * coarsest:
            # Below the pyramid's coarsest level the tiler shrinks by more than 2, where PIL's
            # thumbnail box-reduces before its Lanczos pass: a softer filter than read_region's.
            continue
        cols, rows = generator.level_tiles[level]
        for col, row in {(0, 0), (cols - 1, rows - 1), (cols // 2, rows // 2)}:
            tile = np.asarray(deep_zoom.tile_image(level, col, row), dtype=int)
            height, width = tile.shape[:2]
            if min(height, width) < 32:
                continue  # a few pixels: any two resamplers disagree there
            x, y = tile_l0_box(generator, level, col, row)
            # OpenSlide's tiler fits a partial tile's window into its size keeping the aspect ratio,
            # so it can come out a pixel short: the window is the layout's, the size the tile's.
            layout_w, layout_h = generator.get_tile_dimensions(level, (col, row))
            direct = slide.read_region(x, y, layout_w * scale, layout_h * scale, out_size=(width, height)).astype(int)
            # Inside the slide only: the last tile's window may reach up to scale - 1 pixels past its edge.
            inside_w = min(width, int((slide.dimensions[0] - x) // scale) - 1)
            inside_h = min(height, int((slide.dimensions[1] - y) // scale) - 1)
            difference = np.abs(tile - direct)[:inside_h, :inside_w]
            assert difference.mean() < 1.5, (level, col, row, difference.mean())
            checked += 1
    assert checked >= 9


def test_tile_addresses_outside_the_pyramid_are_refused(pyramid):
    deep_zoom = DeepZoomSlide(open_slide(pyramid))
    cols, rows = deep_zoom.generator.level_tiles[-1]
    assert deep_zoom.tile_jpeg(deep_zoom.level_count - 1, cols - 1, rows - 1)[:2] == b"\xff\xd8"
    for level, col, row in [(deep_zoom.level_count, 0, 0), (0, 1, 0), (deep_zoom.level_count - 1, cols, 0)]:
        with pytest.raises(UserError):
            deep_zoom.tile_image(level, col, row)


def test_a_damaged_tile_fails_alone_and_the_rest_of_the_slide_still_reads(pyramid, tmp_path):
    """OpenSlide's errors are sticky: after one damaged JPEG tile, the handle failed every later read,
    so one bad tile turned the whole slide in `urcdm view` into failed tiles (HTTP 500 with a traceback)."""
    damaged = tmp_path / "damaged.tiff"
    data = bytearray(pyramid.read_bytes())
    with openslide.OpenSlide(str(pyramid)) as reference, tifffile.TiffFile(pyramid) as tiff:
        offset, count = tiff.pages[0].dataoffsets[0], tiff.pages[0].databytecounts[0]  # level 0, tile (0, 0)
        data[offset : offset + count] = b"\xab" * count
        damaged.write_bytes(bytes(data))
        deep_zoom = DeepZoomSlide(open_slide(damaged))
        top = deep_zoom.level_count - 1
        expected = np.asarray(DeepZoomGenerator(reference, tile_size=254, overlap=1).get_tile(top, (2, 2)).convert("RGB"))
    for _ in range(2):
        with pytest.raises(SlideError, match=f"cannot read Deep Zoom tile {top}/0_0"):
            deep_zoom.tile_jpeg(top, 0, 0)
        np.testing.assert_array_equal(np.asarray(deep_zoom.tile_image(top, 2, 2)), expected)
    slide = open_slide(damaged)
    with pytest.raises(SlideError, match="cannot read level 0 at"):
        slide.read_region(0, 0, 64, 64)
    assert slide.read_region(600, 600, 64, 64).shape == (64, 64, 3)  # the handle met an error, and still reads


def run_view(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "urcdm.cli", "view", *args], capture_output=True, text=True,
                          timeout=60, env=env, cwd=cwd)


def test_view_refuses_an_unreadable_slide(tmp_path, pyramid):
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 64)
    result = run_view(str(pyramid), str(broken), "--port", "0")
    assert result.returncode == 2 and result.stderr.startswith("error:") and "broken.svs" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


@pytest.mark.parametrize("address", ["no-such-host.invalid", "999.1.1.1"])
def test_view_refuses_an_address_that_does_not_resolve(pyramid, address):
    result = run_view(str(pyramid), "--address", address, "--port", "0")
    assert result.returncode == 2 and not result.stdout
    assert result.stderr == f"error: --address {address}: not a host name or address this computer can resolve\n"


def test_view_without_openseadragon_says_how_to_install_it(tmp_path, pyramid):
    import os
    env = dict(os.environ, URCDM_OPENSEADRAGON=str(tmp_path))
    result = run_view(str(pyramid), "--port", "0", env=env)
    assert result.returncode == 2 and "make setup" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def assert_served_only_to_this_computer_with_security_headers(url: str) -> None:
    """Every answer carries the headers that stop framing, sniffing and cross-origin reads; a request
    naming another host, as a DNS-rebinding page's would, is refused before it reaches a slide."""
    import urllib.error
    import urllib.request

    from urcdm.deepzoom.server import SECURITY_HEADERS

    for path in ("", "slides.json", "slide/0_files/0/0_0.jpeg", "osd/openseadragon.min.js", "nope"):
        try:
            response = urllib.request.urlopen(url + path, timeout=30)
        except urllib.error.HTTPError as refused:  # the 404 too
            response = refused
        assert {name: response.headers[name] for name in SECURITY_HEADERS} == SECURITY_HEADERS, path
    for host in ("attacker.example", "attacker.example:8765"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "slide/0_files/0/0_0.jpeg", headers={"Host": host}))
        assert refused.value.code == 400 and refused.value.read() == b"Invalid host header"
    assert urllib.request.urlopen(url.replace("127.0.0.1", "localhost") + "slides.json", timeout=30).status == 200


@pytest.mark.parametrize("address, hosts", [("127.0.0.1", ["127.0.0.1", "localhost", "[::1]"]),
                                            ("localhost", ["127.0.0.1", "localhost", "[::1]"]),
                                            ("127.0.0.2", ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"]),
                                            ("::1", ["127.0.0.1", "localhost", "[::1]"]),
                                            ("0.0.0.0", ["*"]), ("::", ["*"])])
def test_only_a_loopback_server_checks_the_host_it_is_asked_for(address, hosts):
    from urcdm.deepzoom.server import allowed_hosts

    assert allowed_hosts(address) == hosts


def _has_ipv6_loopback() -> bool:
    import socket
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_view_listens_on_an_ipv6_address_and_checks_its_host_there(pyramid):
    """`--address ::1` was refused as "not a host name or address this computer can resolve" (an IPv4
    socket); Starlette before 1.7 refused every bracketed IPv6 Host header."""
    import urllib.error
    import urllib.request

    server = subprocess.Popen([sys.executable, "-m", "urcdm.cli", "view", str(pyramid), "--address", "::1",
                               "--port", "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        found = json.loads(server.stdout.readline())
        url = found["url"]
        assert url.startswith("http://[::1]:") and "network_url" not in found  # one address, this computer's
        assert urllib.request.urlopen(url + "slides.json", timeout=30).status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(url + "slides.json", headers={"Host": "attacker.example"}))
        assert refused.value.code == 400
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("address, local", [("127.0.0.1", "http://127.0.0.1:80/"), ("::1", "http://[::1]:80/"),
                                            ("0.0.0.0", "http://127.0.0.1:80/"), ("::", "http://[::1]:80/")])
def test_the_printed_url_is_one_a_browser_can_open(address, local):
    import socket

    from urcdm.clikit import server_urls

    url, network_url = server_urls(address, 80)
    assert url == local
    assert network_url == (f"http://{socket.gethostname()}:80/" if address in ("0.0.0.0", "::") else None)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)
def test_view_page_shows_two_slides_in_step(tmp_path, pyramid, tissue_rgb):
    """``urcdm view A B`` as a user runs it (relative paths, another folder): the page loads in
    chromium, fetches tiles of both, and zooming one moves the other to the same magnification."""
    pytest.importorskip("selenium")
    other = tmp_path / "other.tiff"  # half the pixels at twice the mpp: the same tissue area
    write_pyramid(ArraySource(tissue_rgb[::2, ::2].copy()), other, tile=256, quality=90, mpp=1.0, progress=False)
    shutil.copy(pyramid, tmp_path / "tissue.tiff")
    (tmp_path / "work").mkdir()
    server = subprocess.Popen([sys.executable, "-m", "urcdm.cli", "view", "../tissue.tiff", "../other.tiff",
                               "--port", "0", "--json"], cwd=tmp_path / "work", stdout=subprocess.PIPE, text=True)
    driver = headless_chromium(capabilities={"goog:loggingPrefs": {"browser": "ALL"}})
    try:
        url = json.loads(server.stdout.readline())["url"]
        assert_served_only_to_this_computer_with_security_headers(url)
        driver.get(url)
        deadline = time.time() + 60
        while not driver.execute_script("return document.body.dataset.firstViewMs") and time.time() < deadline:
            time.sleep(0.1)
        assert driver.execute_script("return document.body.dataset.firstViewMs"), "the first view never finished loading"
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map(r => r.name).filter(n => n.includes('_files/'))")
        assert any("/slide/0_files/" in name for name in fetched) and any("/slide/1_files/" in name for name in fetched)
        screen_per_micron = """return window.urcdmViewers.map(e => e.viewer.viewport.viewportToImageZoom(
                                   e.viewer.viewport.getZoom(true)) / e.slide.mpp)"""
        before = driver.execute_script(screen_per_micron)[0]
        driver.execute_script("const v = window.urcdmViewers[0].viewer.viewport; v.zoomBy(6, null, true); "
                              "v.panTo(v.imageToViewportCoordinates(900, 700), true);")
        centre_microns = """return window.urcdmViewers.map(e => {
            const c = e.viewer.viewport.viewportToImageCoordinates(e.viewer.viewport.getCenter(true));
            return [c.x * e.slide.mpp, c.y * e.slide.mpp]; })"""
        # The other viewer follows on OpenSeadragon's next animation frame, not within this script.
        deadline = time.time() + 10
        while True:
            (first, second), centres = driver.execute_script(screen_per_micron), driver.execute_script(centre_microns)
            if (second == pytest.approx(first, rel=1e-6) and centres[0] == pytest.approx(centres[1], abs=0.5)) \
                    or time.time() > deadline:
                break
            time.sleep(0.05)
        assert first == pytest.approx(6 * before, rel=1e-6) and second == pytest.approx(first, rel=1e-6)
        assert centres[0] == pytest.approx(centres[1], abs=0.5) and centres[0] == pytest.approx([450, 350], abs=0.5)
        # the page works under its Content-Security-Policy: chromium reported no violation, no error
        assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)
def test_view_of_three_slides_opens_with_all_in_view_and_stays_there(tmp_path, pyramid, tissue_rgb):
    """Three slides of different sizes at 1366 px: the first view shows the box that spans them all
    whole, at one magnification, and does not drift afterwards; every name is shown whole."""
    pytest.importorskip("selenium")
    names = ["real-tcga-cr-7395-01a-ts1.tiff", "synthetic-slide-seed-7.tiff", "small.tiff"]  # TCGA-length
    shutil.copy(pyramid, tmp_path / names[0])  # the largest, at 0.5 um
    write_pyramid(ArraySource(tissue_rgb[::2, ::2].copy()), tmp_path / names[1], tile=256, quality=90, mpp=1.0,
                  progress=False)  # the same area in microns
    write_pyramid(ArraySource(tissue_rgb[:400, :1200].copy()), tmp_path / names[2], tile=256, quality=90, mpp=0.5,
                  progress=False)
    server = subprocess.Popen([sys.executable, "-m", "urcdm.cli", "view", *names, "--port", "0", "--json"],
                              cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    driver = headless_chromium()
    try:
        driver.get(json.loads(server.stdout.readline())["url"])
        deadline = time.time() + 60
        while not driver.execute_script("return document.body.dataset.firstViewMs") and time.time() < deadline:
            time.sleep(0.1)
        views = """return window.urcdmViewers.map(e => {
            const v = e.viewer.viewport, size = v.getContainerSize();
            const c = v.viewportToImageCoordinates(v.getCenter(true));
            return [v.viewportToImageZoom(v.getZoom(true)) / e.slide.mpp, size.x, size.y,
                    c.x * e.slide.mpp, c.y * e.slide.mpp]; })"""
        first = driver.execute_script(views)
        time.sleep(1.5)
        later = driver.execute_script(views)
        assert np.allclose(later, first, rtol=1e-6), f"the view moved by itself: {first} -> {later}"
        height, width = tissue_rgb.shape[:2]
        extent = (width * 0.5, height * 0.5)  # microns: the largest slide's, from the common origin
        zooms = [view[0] for view in first]
        assert zooms == pytest.approx([zooms[0]] * 3, rel=1e-6)
        fit = min(min(w / extent[0], h / extent[1]) for _, w, h, _, _ in first)
        assert zooms[0] == pytest.approx(fit, rel=1e-3)
        for view in first:
            assert view[3:] == pytest.approx([extent[0] / 2, extent[1] / 2], abs=0.5)
        shown = driver.execute_script("return [...document.querySelectorAll('.caption .name')].map("
                                      "n => [n.textContent, n.scrollWidth <= n.clientWidth])")
        assert shown == [[name, True] for name in names]
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)


def _first_view(driver) -> None:
    deadline = time.time() + 60
    while not driver.execute_script("return document.body.dataset.firstViewMs") and time.time() < deadline:
        time.sleep(0.1)
    assert driver.execute_script("return document.body.dataset.firstViewMs"), "the first view never finished loading"


def _wait_for_status(driver, text: str, timeout: float = 20) -> str:
    deadline = time.time() + timeout
    shown = None
    while time.time() < deadline:
        shown = driver.execute_script("return document.getElementById('status').textContent")
        if text in shown:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"status {shown!r} never said {text!r}")


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason=MISSING)
def test_a_server_restart_under_an_open_view_says_so_and_loads_the_tiles_that_failed(tmp_path, pyramid):
    """OpenSeadragon never asks again for a tile that failed: zoomed in while the server was down, a panel
    kept the coarser level (it looks like blur) after the server came back. Now the page says the server
    is gone, and once the same server answers, every tile that failed loads; a server that came back
    with other slides is named as such."""
    pytest.importorskip("selenium")
    shutil.copy(pyramid, tmp_path / "tissue.tiff")
    shutil.copy(pyramid, tmp_path / "other.tiff")

    def serve(port: str, *slides: str) -> tuple[subprocess.Popen, str]:
        server = subprocess.Popen([sys.executable, "-m", "urcdm.cli", "view", *slides, "--port", port, "--json"],
                                  cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        return server, json.loads(server.stdout.readline())["url"]

    server, url = serve("0", "tissue.tiff")
    port = url.rstrip("/").rsplit(":", 1)[1]
    driver = headless_chromium()
    try:
        driver.get(url)
        _first_view(driver)
        driver.execute_script("""window.failed = []; window.loaded = [];
            const viewer = window.urcdmViewers[0].viewer;
            viewer.addHandler('tile-load-failed', e => window.failed.push(e.tile.getUrl()));
            viewer.addHandler('tile-loaded', e => window.loaded.push(e.tile.getUrl()));""")
        assert driver.execute_script("return document.getElementById('status').textContent") == ""
        server.kill()
        server.wait(10)
        driver.execute_script("const v = window.urcdmViewers[0].viewer.viewport; v.zoomBy(3, null, true);")
        _wait_for_status(driver, "Server not answering")
        failed = set(driver.execute_script("return window.failed"))
        assert failed, "zooming in asked for no new tile"
        server, _ = serve(port, "tissue.tiff")
        deadline = time.time() + 20
        while not failed <= set(driver.execute_script("return window.loaded")) and time.time() < deadline:
            time.sleep(0.1)
        assert failed <= set(driver.execute_script("return window.loaded")), "tiles that failed were never asked again"
        assert driver.execute_script("return document.getElementById('status').textContent") == ""

        server.kill()
        server.wait(10)
        driver.execute_script("const v = window.urcdmViewers[0].viewer.viewport; v.panBy(new OpenSeadragon.Point(0.3, 0.2), true);")
        _wait_for_status(driver, "Server not answering")
        server, _ = serve(port, "other.tiff")
        _wait_for_status(driver, "other slides: reload the page")
    finally:
        driver.quit()
        server.terminate()
        server.wait(10)
