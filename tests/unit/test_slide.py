import numpy as np
import pytest

from histobatch.errors import SlideError
from histobatch.resample import ModelSpace, rescale_array
from histobatch.slide import open_slide
from histobatch.tissue import detect_tissue, tissue_from_rgb
from tests.conftest import make_disc_image, real_data, write_pyramidal_tiff


def test_pyramidal_tiff_levels_and_mpp(tmp_path):
    image, _ = make_disc_image(700, 600, 10)
    path = write_pyramidal_tiff(tmp_path / "s.tiff", image, mpp=0.5)
    with open_slide(path) as slide:
        assert slide.format == "generic-tiff"
        assert slide.mpp == pytest.approx(0.5)
        assert slide.mpp_source == "metadata"
        assert slide.level_dimensions[0] == (700, 600)
        assert len(slide.level_dimensions) >= 2
        region = slide.read_region(0, -10, -10, 30, 30)
        assert region.shape == (30, 30, 3)
        assert (region[:10, :10] == 255).all()  # outside the slide is white


def test_mpp_override_and_missing_mpp(tmp_path):
    image, _ = make_disc_image(300, 300, 5)
    path = write_pyramidal_tiff(tmp_path / "nompp.tiff", image, mpp=None)
    with pytest.raises(SlideError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.25) as slide:
        assert slide.mpp == 0.25 and slide.mpp_source == "--mpp"
    with pytest.raises(SlideError, match="plausible"):
        open_slide(path, mpp=500)


def test_plain_png_is_a_one_level_slide(tmp_path):
    from PIL import Image

    image, _ = make_disc_image(200, 150, 5)
    Image.fromarray(image).save(tmp_path / "x.png")
    with open_slide(tmp_path / "x.png", mpp=0.25) as slide:
        assert slide.format == "image"
        assert slide.level_dimensions == [(200, 150)]
        assert np.array_equal(slide.read_region(0, 0, 0, 200, 150), image)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty file"),
        (b"hello, not a slide\n" * 10, "unsupported format"),
    ],
)
def test_unreadable_files(tmp_path, content, message):
    path = tmp_path / "bad.svs"
    path.write_bytes(content)
    with pytest.raises(SlideError, match=message):
        open_slide(path)


def test_model_space_reads_are_tile_invariant(tmp_path):
    image, _ = make_disc_image(400, 300, 20)
    path = write_pyramidal_tiff(tmp_path / "s.tiff", image, mpp=0.5)
    with open_slide(path) as slide:
        space = ModelSpace(slide, 0.25)
        assert (space.width, space.height) == (800, 600)
        a = space.read(100, 100, 200, 200)
        b = space.read(150, 130, 200, 200)
        assert np.array_equal(a[30:, 50:], b[:170, :150])
        x0, y0 = space.to_level0(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
        assert x0.tolist() == pytest.approx([-0.25, 0.25])


def test_training_images_are_resampled_like_slides(tmp_path):
    """A 40x training image brought to a 20x model matches what segment reads from a 40x slide
    (away from the border, where slides have white and crops have more tissue)."""
    image, _ = make_disc_image(256, 192, 12, seed=4)
    path = write_pyramidal_tiff(tmp_path / "s.tiff", image, mpp=0.25, levels=1)
    with open_slide(path) as slide:
        space = ModelSpace(slide, 0.5)
        from_slide = space.read(0, 0, 128, 96)
    from_training = rescale_array(image, 0.5)
    assert from_training.shape == (96, 128, 3)
    diff = np.abs(from_slide[3:-3, 3:-3].astype(int) - from_training[3:-3, 3:-3].astype(int))
    assert diff.max() <= 1
    labels = np.zeros((192, 256), np.int32)
    labels[40:80, 100:160] = 70000
    small = rescale_array(labels, 0.5, labels=True)
    assert small.dtype == np.int32 and set(np.unique(small)) == {0, 70000}
    assert (small == 70000).sum() == 20 * 30


def test_blank_slide_has_no_tissue():
    assert not tissue_from_rgb(np.full((64, 64, 3), 240, np.uint8)).any()


def test_pale_tissue_is_tissue_when_there_is_no_glass_to_compare_with():
    """A field of dark purple and pale pink tissue (saturation ~150 and ~40) is all tissue; with
    glass beside it (saturation ~5), the glass alone is left out."""
    field = np.zeros((64, 64, 3), np.uint8)
    field[:, :32] = (120, 60, 150)  # haematoxylin-dense
    field[:, 32:] = (235, 200, 215)  # pale eosin stroma
    assert tissue_from_rgb(field).mean() == 1.0
    with_glass = np.full((64, 96, 3), (236, 238, 240), np.uint8)
    with_glass[:, :64] = field
    mask = tissue_from_rgb(with_glass)
    assert mask[:, :64].all() and not mask[:, 66:].any()


def test_tissue_found_on_synthetic_slide(tmp_path):
    image, _ = make_disc_image(800, 600, 20)
    with open_slide(write_pyramidal_tiff(tmp_path / "s.tiff", image, mpp=0.25)) as slide:
        tissue = detect_tissue(slide)
        expected = np.pi * (800 * 0.47) * (600 * 0.47) * 0.25**2 / 1e6
        assert tissue.area_mm2(slide.mpp) == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize(
    "name, mpp",
    [
        ("cmu-1-small-region.svs", 0.499),
        ("small.svs", 0.499),
        ("boxes_0.dcm", 0.499),
        ("tcga-cr-7395-01a-01-ts1.svs", None),
        ("boxes.tiff", None),
    ],
)
def test_real_slide_formats(name, mpp):
    path = real_data("slides", name)
    with open_slide(path, require_mpp=False) as slide:
        assert slide.mpp == (pytest.approx(mpp) if mpp else None)
        thumb, factor = slide.thumbnail(256)
        assert thumb.ndim == 3 and max(thumb.shape[:2]) <= 256 and factor >= 1


def test_jpeg2000_svs_without_mpp_needs_the_flag():
    path = real_data("slides", "tcga-cr-7395-01a-01-ts1.svs")
    with pytest.raises(SlideError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        tile = slide.read_region(0, 2000, 1500, 64, 64)
        assert tile.std() > 0  # real JPEG 2000 pixels decoded


def test_plain_images_are_mirrored_beyond_their_border_and_slides_are_white(tmp_path):
    """A plain image (a field of view cut from tissue) continues as its own mirror image; a
    slide's outside is glass (white)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 200, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "fov.png")
    with open_slide(tmp_path / "fov.png", mpp=0.25) as slide:
        assert slide.outside == "reflect"
        region = slide.read_region(0, -5, -3, 70, 27)
        expected = np.pad(pixels, ((3, 4), (5, 35), (0, 0)), mode="reflect")
        assert np.array_equal(region, expected)
        assert np.array_equal(slide.read_region(0, 2, 3, 10, 10), pixels[3:13, 2:12])
        slide.outside = "white"
        assert (slide.read_region(0, -5, -3, 70, 27)[:3] == 255).all()
