import numpy as np
import openslide
import pytest
import tifffile
from PIL import Image

from conftest import psnr, tissue_image
from urcdm.errors import SlideError
from urcdm.pyramid import ArraySource, write_pyramid
from urcdm.slides import FILL_RGB, OpenSlides, open_slide
from urcdm.slides.image_slide import PillowSlide, TiffSlide
from urcdm.slides.openslide_slide import OpenSlideSlide


def reference_read(full: np.ndarray, x, y, w, h, out_size) -> np.ndarray:
    """The slow, obvious answer: pad the full-resolution image with glass, resize the box in memory."""
    pad = 512
    padded = np.empty((full.shape[0] + 2 * pad, full.shape[1] + 2 * pad, 3), np.uint8)
    padded[...] = FILL_RGB
    padded[pad:-pad, pad:-pad] = full
    box = (x + pad, y + pad, x + w + pad, y + h + pad)
    return np.asarray(Image.fromarray(padded).resize(out_size, Image.Resampling.LANCZOS, box=box))


class LevelSpy:
    """Records which pyramid levels a slide reads from."""

    def __init__(self, slide):
        self.levels = []
        original = slide._read_level

        def spy(level, *window):
            self.levels.append(level)
            return original(level, *window)

        slide._read_level = spy


@pytest.fixture(scope="module")
def pyramid(tmp_path_factory, tissue_rgb):
    path = tmp_path_factory.mktemp("pyramid") / "lossless.tiff"
    write_pyramid(ArraySource(tissue_rgb), path, tile=256, quality=None, mpp=0.5, progress=False)
    return path


@pytest.mark.parametrize(
    "region, out_size, level",
    [
        ((100, 200, 512, 512), (512, 512), 0),  # identity
        ((37.5, 11.25, 400, 300), (400, 300), 0),  # sub-pixel shift
        ((0, 0, 1024, 1024), (512, 512), 1),  # downsample 2
        ((100, 100, 1200, 1600), (300, 400), 2),  # downsample 4
        ((0, 0, 1500, 1900), (150, 190), 3),  # downsample 10: from the coarsest level
        ((300, 300, 96, 96), (384, 384), 0),  # upsampling
        ((-200, 1700, 600, 400), (300, 200), 1),  # partly outside the slide
    ],
)
def test_read_region_matches_full_resolution_resize(pyramid, tissue_rgb, region, out_size, level):
    slide = open_slide(pyramid)
    spy = LevelSpy(slide)
    got = slide.read_region(*region, out_size=out_size)
    assert got.shape == (out_size[1], out_size[0], 3) and got.dtype == np.uint8
    assert set(spy.levels) == {level}, "read from the wrong pyramid level"
    expected = reference_read(tissue_rgb, *region, out_size)
    if level == 0 and region[2:] == out_size and float(region[0]).is_integer():
        np.testing.assert_array_equal(got, expected)
    else:
        # Coarser levels are box-reduced before the final resize, so only close, not equal.
        assert psnr(got, expected) > 30, f"{psnr(got, expected):.1f} dB"


def test_outside_the_slide_is_glass(pyramid):
    slide = open_slide(pyramid)
    assert (slide.read_region(5000, 5000, 256, 256) == FILL_RGB).all()
    assert (slide.read_region(-4000, -4000, 2048, 2048, out_size=(64, 64)) == FILL_RGB).all()
    partial = slide.read_region(-100, 0, 200, 100)
    assert (partial[:, :100] == FILL_RGB).all() and not (partial[:, 100:] == FILL_RGB).all()


def test_large_downsampled_read_is_blocked_and_bounded(pyramid, tissue_rgb):
    """A read larger than one block's budget gives the same pixels as one big resize."""
    slide = open_slide(pyramid)
    from urcdm.slides import base

    expected = slide.read_region(0, 0, 1500, 1900, out_size=(1000, 1266))
    original = base.plan_blocks
    base.plan_blocks = lambda src, out, max_source_pixels=0: original(src, out, max_source_pixels=40_000)
    try:
        blocked = slide.read_region(0, 0, 1500, 1900, out_size=(1000, 1266))
    finally:
        base.plan_blocks = original
    # Same filter taps; PIL's float accumulation may round a handful of values the other way.
    difference = np.abs(blocked.astype(int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_slide_properties_of_our_pyramid(pyramid):
    with open_slide(pyramid) as slide:
        assert isinstance(slide, OpenSlideSlide)
        assert slide.dimensions == (1500, 1900)
        assert slide.level_count == 4
        assert slide.level_downsamples[:3] == (1.0, 2.0, 4.0)
        assert slide.mpp == pytest.approx((0.5, 0.5))
        assert slide.vendor == "generic-tiff"


def test_plain_images_go_through_the_fallback(tmp_path):
    image = tissue_image(300, 400, seed=5)
    tifffile.imwrite(tmp_path / "plain.tif", image, resolution=(1e4 / 0.25, 1e4 / 0.25), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(image, -1, 0), photometric="rgb", planarconfig="separate")
    tifffile.imwrite(tmp_path / "deflate.tif", image, compression="zlib", rowsperstrip=32)  # zarr path
    Image.fromarray(image).save(tmp_path / "plain.png")
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    rgba[:50, :50, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "alpha.png")
    Image.fromarray(image).save(tmp_path / "plain.jpg", quality=95)

    for name, reader in [("plain.tif", TiffSlide), ("planar.tif", TiffSlide), ("deflate.tif", TiffSlide),
                         ("plain.png", PillowSlide)]:
        with open_slide(tmp_path / name) as slide:
            assert isinstance(slide, reader), name
            assert slide.dimensions == (400, 300)
            np.testing.assert_array_equal(slide.read_region(0, 0, 400, 300), image)
            np.testing.assert_array_equal(slide.read_region(10, 20, 30, 40), image[20:60, 10:40])
    assert open_slide(tmp_path / "plain.tif").mpp == pytest.approx((0.25, 0.25))
    transparent = open_slide(tmp_path / "alpha.png").read_region(0, 0, 100, 100)
    assert (transparent[:50, :50] == FILL_RGB).all()
    np.testing.assert_array_equal(transparent[50:, 50:], image[50:100, 50:100])
    assert psnr(open_slide(tmp_path / "plain.jpg").read_region(0, 0, 400, 300), image) > 35


@pytest.mark.parametrize("maker", ["missing", "directory", "empty", "garbage_svs", "truncated_tiff"])
def test_unreadable_inputs_raise_one_clear_slide_error(tmp_path, maker, tissue_rgb):
    path = tmp_path / "input.svs"
    if maker == "directory":
        path.mkdir()
    elif maker == "empty":
        path.touch()
    elif maker == "garbage_svs":
        path.write_bytes(np.random.default_rng(0).bytes(1001))
    elif maker == "truncated_tiff":
        path = tmp_path / "input.tif"
        tifffile.imwrite(path, tissue_rgb)
        path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(SlideError) as info:
        with open_slide(path) as slide:
            slide.read_region(0, 0, 1500, 1900)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_name_that_promises_another_format_and_a_device_are_said_for_what_they_are(tmp_path):
    png_named_svs = tmp_path / "scan.svs"
    Image.fromarray(tissue_image(40, 40, seed=1)).save(png_named_svs, format="PNG")
    with pytest.raises(SlideError, match=r"scan.svs: the file is a PNG image; a .svs slide \(Aperio\) is a TIFF"):
        open_slide(png_named_svs)
    with pytest.raises(SlideError, match="^/dev/zero: not a regular file$"):  # was "empty file (0 bytes)"
        open_slide("/dev/zero")


# -- the real slides in shared/data -----------------------------------------------------------------

def test_cmu_aperio_single_level(real_data):
    path = real_data / "slides" / "cmu-1-small-region.svs"
    with open_slide(path) as slide:
        assert isinstance(slide, OpenSlideSlide) and slide.vendor == "aperio"
        assert slide.dimensions == (2220, 2967) and slide.level_count == 1
        assert slide.mpp == pytest.approx((0.499, 0.499))
        reference = np.asarray(openslide.OpenSlide(path).read_region((1000, 1200), 0, (512, 512)))[..., :3]
        np.testing.assert_array_equal(slide.read_region(1000, 1200, 512, 512), reference)


def test_tcga_two_levels_jpeg2000(real_data):
    path = real_data / "slides" / "tcga-cr-7395-01a-01-ts1.svs"
    with open_slide(path) as slide:
        assert slide.dimensions == (4443, 3567) and slide.level_count == 2
        assert slide.level_downsamples[1] == pytest.approx(2.0, rel=1e-3)
        spy = LevelSpy(slide)
        thumb = slide.read_region(0, 0, 4443, 3567, out_size=(444, 357))
        assert spy.levels and set(spy.levels) == {1}, "a 10x-reduced read must not decode level 0"
        full = np.asarray(openslide.OpenSlide(path).read_region((0, 0), 0, (4443, 3567)))[..., :3]
        expected = np.asarray(Image.fromarray(full).resize((444, 357), Image.Resampling.LANCZOS))
        assert psnr(thumb, expected) > 28


def test_kidney_plain_tiff_through_the_fallback(real_data):
    path = real_data / "slides" / "kidney-48-5.tif"
    with pytest.raises(openslide.OpenSlideError):
        openslide.OpenSlide(path)
    with open_slide(path) as slide:
        assert isinstance(slide, TiffSlide)
        assert slide.dimensions == (1493, 901)
        np.testing.assert_array_equal(slide.read_region(0, 0, 1493, 901), tifffile.imread(path)[..., :3])


def test_broken_svs_is_a_slide_error(real_data):
    with pytest.raises(SlideError, match="broken.svs"):
        open_slide(real_data / "slides" / "broken.svs")


@pytest.mark.parametrize("name, said", [("cut.svs", "damaged Aperio slide"), ("cut.tif", "damaged TIFF, cut short")])
def test_a_slide_cut_short_is_a_slide_error_not_its_first_pages(real_data, tmp_path, caplog, capfd, name, said):
    """The CMU slide without its last 23 %: OpenSlide refuses it, and tifffile would still give its
    first pages (level 0 intact, the rest of the pyramid and the mpp gone), warning on stderr."""
    whole = (real_data / "slides" / "cmu-1-small-region.svs").read_bytes()
    cut = tmp_path / name
    cut.write_bytes(whole[: int(len(whole) * 0.77)])
    with pytest.raises(SlideError, match=said):
        open_slide(cut)
    assert "invalid page offset" not in capfd.readouterr().err  # gathered into the error, not printed


@pytest.mark.parametrize("made_by", ["strips", "zlib strips", "our pyramid"])
def test_a_tiff_whose_pixels_run_past_its_end_is_refused_not_read_as_fill(tmp_path, tissue_rgb, made_by):
    """A TIFF cut in its pixel data, after its last page (OpenSlide refuses it: untiled, or "Short
    read"): every page is still there, so tifffile opens it and reads the missing strips or tiles as
    flat fill, a half-grey slide that would pass for a real one."""
    whole = tmp_path / "whole.tif"
    if made_by == "our pyramid":
        write_pyramid(ArraySource(tissue_rgb), whole, tile=256, quality=None, mpp=0.5, progress=False)
    else:
        tifffile.imwrite(whole, tissue_rgb, compression="zlib" if "zlib" in made_by else None, rowsperstrip=64)
    with tifffile.TiffFile(whole) as tiff:
        pages = len(tiff.pages)
        # the file without the strip or tile stored last, and all that follows it
        offsets, ends = zip(*[(o, o + n) for page in tiff.pages for o, n in zip(page.dataoffsets, page.databytecounts)])
        last_stored = offsets[int(np.argmax(ends))]
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[:last_stored])
    assert len(tifffile.TiffFile(cut).pages) == pages  # the pages themselves survived the cut
    with pytest.raises(SlideError, match="damaged TIFF, cut short .*is the file complete"):
        with open_slide(cut) as slide:
            slide.read_region(0, 0, *slide.dimensions)


def test_open_slides_keeps_at_most_its_limit_and_closes_the_least_recently_used(tmp_path, monkeypatch):
    paths = []
    for i in range(3):
        Image.fromarray(tissue_image(32, 32, seed=i)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    closed = []
    monkeypatch.setattr(PillowSlide, "close", lambda self: closed.append(self.path.name))
    slides = OpenSlides(limit=2)
    first = slides.get(paths[0])
    slides.get(paths[1])
    assert slides.get(paths[0]) is first  # reused, and now the most recently used
    slides.get(paths[2])
    assert closed == ["1.png"]
    slides.close()
    assert sorted(closed) == ["0.png", "1.png", "2.png"]
