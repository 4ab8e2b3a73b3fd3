import json
import signal
import subprocess
import sys

import numpy as np
import openslide
import pytest
import tifffile
from skimage.transform import downscale_local_mean

from conftest import psnr, tissue_image
from urcdm.errors import OutputExistsError, UserError
from urcdm.pyramid import ArraySource, DiskCanvas, halve, level_sizes, write_pyramid


def reference_halve(rgb: np.ndarray) -> np.ndarray:
    """scikit-image's 2x2 mean with edge replication, rounded half up: the expected next level."""
    h, w = rgb.shape[:2]
    padded = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge").astype(np.float64)
    return np.floor(downscale_local_mean(padded, (2, 2, 1)) + 0.5).astype(np.uint8)


def read_level(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    return np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))[..., :3]


@pytest.mark.parametrize("shape", [(64, 64), (65, 33), (1, 7)])
def test_halve_matches_scikit_image(shape):
    rgb = np.random.default_rng(1).integers(0, 256, size=shape + (3,), dtype=np.uint8)
    np.testing.assert_array_equal(halve(rgb), reference_halve(rgb))


def test_level_sizes_halve_until_one_tile():
    assert level_sizes(41344, 41344, 512) == [(41344 // 2**k,) * 2 for k in range(7)] + [(323, 323)]
    assert level_sizes(1000, 300, 512) == [(1000, 300), (500, 150)]
    assert level_sizes(200, 100, 256) == [(200, 100)]


def test_canvas_regions_in_any_order_read_back_exactly(tmp_path):
    rng = np.random.default_rng(0)
    width, height = 1000, 700
    reference = np.zeros((height, width, 3), np.uint8)
    reference[...] = (242, 243, 242)  # unwritten area reads as the fill colour
    canvas = DiskCanvas.create(tmp_path / "c.canvas", width, height, chunk=128)
    for _ in range(60):
        w, h = int(rng.integers(1, 300)), int(rng.integers(1, 300))
        x, y = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        patch = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        canvas.write(x, y, patch)
        reference[y : y + h, x : x + w] = patch
    np.testing.assert_array_equal(canvas.read(0, 0, width, height), reference)
    np.testing.assert_array_equal(canvas.read(123, 45, 300, 200), reference[45:245, 123:423])
    canvas.close()
    reopened = DiskCanvas.open(tmp_path / "c.canvas")
    np.testing.assert_array_equal(reopened.read(0, 0, width, height), reference)
    with pytest.raises(ValueError):
        reopened.read(900, 0, 200, 10)
    reopened.close()


def test_lossless_round_trip_is_pixel_exact_at_every_level(tmp_path, tissue_rgb):
    out = tmp_path / "lossless.tiff"
    info = write_pyramid(ArraySource(tissue_rgb), out, tile=256, quality=None, mpp=0.25, progress=False)
    slide = openslide.OpenSlide(out)
    assert slide.properties["openslide.vendor"] == "generic-tiff"
    assert slide.level_count == len(info.level_dimensions) == 4
    assert [tuple(d) for d in slide.level_dimensions] == [(1500, 1900), (750, 950), (375, 475), (188, 238)]
    np.testing.assert_allclose(slide.level_downsamples, [1, 2, 4, 1500 / 188 / 2 + 1900 / 238 / 2], rtol=1e-6)
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(0.25)
    assert float(slide.properties["openslide.mpp-y"]) == pytest.approx(0.25)
    expected = tissue_rgb
    for level in range(slide.level_count):
        np.testing.assert_array_equal(read_level(slide, level), expected, err_msg=f"level {level}")
        expected = reference_halve(expected)


def test_tiff_layout_is_what_openslide_needs(tmp_path, tissue_rgb):
    out = tmp_path / "layout.tiff"
    write_pyramid(ArraySource(tissue_rgb), out, tile=512, quality=80, progress=False)
    with tifffile.TiffFile(out) as tiff:
        assert tiff.is_bigtiff
        assert len(tiff.pages) == 3  # top-level pages, no SubIFDs
        for index, page in enumerate(tiff.pages):
            assert page.is_tiled and (page.tilelength, page.tilewidth) == (512, 512)
            assert page.compression == tifffile.COMPRESSION.JPEG
            assert bool(page.subfiletype & tifffile.FILETYPE.REDUCEDIMAGE) == (index > 0)


def test_jpeg_round_trip_quality_and_level_accuracy(tmp_path, tissue_rgb):
    default = write_pyramid(ArraySource(tissue_rgb), tmp_path / "420.tiff", tile=512, quality=90, progress=False)
    full = write_pyramid(ArraySource(tissue_rgb), tmp_path / "444.tiff", tile=512, quality=90,
                         chroma_subsampling=False, progress=False)
    subsampled, full_chroma = openslide.OpenSlide(default.path), openslide.OpenSlide(full.path)
    expected = tissue_rgb
    for level in range(subsampled.level_count):
        quality_420 = psnr(read_level(subsampled, level), expected)
        quality_444 = psnr(read_level(full_chroma, level), expected)
        # Level 0 is the acceptance floor; reduced levels pack more detail per pixel, so JPEG
        # loses a little more there, but every level is encoded from exact pixels (no drift).
        assert quality_420 >= (35.0 if level == 0 else 32.0), f"level {level}: {quality_420:.2f} dB"
        assert quality_444 > quality_420
        expected = reference_halve(expected)
    assert default.file_bytes < full.file_bytes < tissue_rgb.nbytes / 3


def test_canvas_streams_into_a_pyramid_without_losing_writes(tmp_path):
    image = tissue_image(1100, 1300, seed=3)
    canvas = DiskCanvas.create(tmp_path / "c.canvas", 1300, 1100, chunk=256)
    # Overlapping patches written out of order, as the sampler does.
    origins = [(x, y) for y in range(0, 1100, 300) for x in range(0, 1300, 300)]
    for x, y in reversed(origins):
        canvas.write(x, y, image[y : y + 400, x : x + 400])
    write_pyramid(canvas, tmp_path / "c.tiff", tile=256, quality=None, progress=False)
    canvas.close()
    np.testing.assert_array_equal(read_level(openslide.OpenSlide(tmp_path / "c.tiff"), 0), image)
    assert (tmp_path / "c.canvas").exists(), "the writer must not delete the caller's canvas"


class ExplodingSource(ArraySource):
    def read(self, x, y, w, h):
        if y > 0:
            raise RuntimeError("source failed half-way")
        return super().read(x, y, w, h)


def test_failed_write_leaves_no_file_and_keeps_existing_output(tmp_path, tissue_rgb):
    out = tmp_path / "out.tiff"
    with pytest.raises(RuntimeError):
        write_pyramid(ExplodingSource(tissue_rgb), out, tile=256, progress=False)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"precious")
    with pytest.raises(OutputExistsError):
        write_pyramid(ArraySource(tissue_rgb), out, progress=False)
    with pytest.raises(RuntimeError):
        write_pyramid(ExplodingSource(tissue_rgb), out, tile=256, overwrite=True, progress=False)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tiff"]


PEAK_RSS_SCRIPT = """
import json, resource, sys
import numpy as np
from urcdm.pyramid import DiskCanvas, write_pyramid
size, folder = int(sys.argv[1]), sys.argv[2]
canvas = DiskCanvas.create(folder + "/c.canvas", size, size)
patch = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
for y in range(0, size, 1024):
    for x in range(0, size, 1024):
        canvas.write(x, y, patch[: min(1024, size - y), : min(1024, size - x)])
write_pyramid(canvas, folder + "/out.tiff", quality=None, progress=False)
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_peak_memory_does_not_grow_with_image_size(tmp_path):
    peaks = {}
    for size in (1024, 8192):
        folder = tmp_path / str(size)
        folder.mkdir()
        result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, str(size), str(folder)],
                                capture_output=True, text=True, check=True)
        peaks[size] = json.loads(result.stdout)["peak_rss_mb"]
    # 64x the pixels (192 MB of raw RGB at 8192^2) may cost at most a few tiles more.
    assert peaks[8192] - peaks[1024] < 60, peaks


def test_published_pyramids_get_ordinary_permissions(tmp_path, tissue_rgb):
    import os
    import stat

    from urcdm.pyramid import ArraySource, write_pyramid

    out = tmp_path / "p.tiff"
    write_pyramid(ArraySource(tissue_rgb[:256, :256]), out, tile=256, progress=False)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("mpp", [1e-3, 1e4])
def test_the_range_of_recordable_mpp_reaches_openslide_at_every_level(tmp_path, mpp):
    out = tmp_path / "edge.tiff"
    write_pyramid(ArraySource(tissue_image(1100, 1100, seed=5)), out, tile=256, mpp=mpp, progress=False)
    slide = openslide.OpenSlide(out)
    assert float(slide.properties["openslide.mpp-x"]) == pytest.approx(mpp, rel=1e-6)
    with tifffile.TiffFile(out) as tiff:
        for page, downsample in zip(tiff.pages, slide.level_downsamples):
            numerator, denominator = page.tags["XResolution"].value
            assert 1e4 * denominator / numerator == pytest.approx(mpp * downsample, rel=1e-3)


@pytest.mark.parametrize("mpp", [1e-9, 1e300])
def test_an_mpp_a_tiff_cannot_record_is_refused_before_any_pixel(tmp_path, mpp):
    """1e-9 needs a resolution past 2**32 (tifffile raised a ValueError traceback); 1e300 stored zero,
    and the slide came out without its mpp and without a word."""
    with pytest.raises(UserError, match="cannot be recorded in a TIFF"):
        write_pyramid(ArraySource(tissue_image(300, 300, seed=5)), tmp_path / "never.tiff", mpp=mpp, progress=False)
    assert list(tmp_path.iterdir()) == []


def _signal_as_it_is_made(make, nth):
    """``make`` (mkstemp, mkdtemp) whose ``nth`` call is followed at once by a SIGTERM: the worst
    moment, before the caller has taken charge of removing what was made."""
    calls = []

    def made_then_signalled(*args, **kwargs):
        made = make(*args, **kwargs)
        calls.append(made)
        if len(calls) == nth:
            signal.raise_signal(signal.SIGTERM)
        return made
    return made_then_signalled


@pytest.mark.parametrize("made_by, nth", [("mkstemp", 1), ("mkstemp", 2), ("mkdtemp", 1)],
                         ids=["the probe of the folder", "the temporary output", "the levels' scratch folder"])
def test_a_sigterm_while_a_temporary_is_made_leaves_nothing(tmp_path, tissue_rgb, monkeypatch, made_by, nth):
    """A SIGTERM between making a temporary and the ``try`` that removes it left it beside the target
    (a probe or a levels folder after 3 of 100 converts killed under load)."""
    import tempfile

    from urcdm.interrupts import Terminated, sigterm_as_interrupt

    monkeypatch.setattr(tempfile, made_by, _signal_as_it_is_made(getattr(tempfile, made_by), nth))
    inherited = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # what sigterm_as_interrupt takes over
    try:
        with pytest.raises(Terminated), sigterm_as_interrupt():
            write_pyramid(ArraySource(tissue_rgb[:512, :512].copy()), tmp_path / "out.tiff", tile=256, progress=False)
    finally:
        signal.signal(signal.SIGTERM, inherited)
    assert list(tmp_path.iterdir()) == []


def test_signals_deferred_acts_once_the_block_ends_and_leaves_ignored_signals_ignored():
    from urcdm.interrupts import signals_deferred

    inherited = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run in a background job
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        steps = []
        with pytest.raises(KeyboardInterrupt):
            with signals_deferred():
                signal.raise_signal(signal.SIGINT)
                steps.append("after the signal, inside the block")
            steps.append("after the block")  # never: the Ctrl-C acts as the block ends
        assert steps == ["after the signal, inside the block"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under a script's `&`
        with signals_deferred():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)
