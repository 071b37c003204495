"""The optional TIAToolbox extra: --stain-norm (slide stain fixed once) and OME-TIFF pyramids.

CI's environment has no TIAToolbox (its pins conflict with the core install): there the test
checks the one-line install hint; in an environment with ``histobatch[tiatoolbox]`` the others run.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from histobatch.cli.main import cli
from tests.conftest import make_disc_image, real_data, write_pyramidal_tiff

HAS_TIATOOLBOX = importlib.util.find_spec("tiatoolbox") is not None


@pytest.fixture()
def slide_and_target(tmp_path):
    image, _ = make_disc_image(500, 400, 20, seed=8)
    slide = write_pyramidal_tiff(tmp_path / "slide.tiff", image, mpp=0.25)
    target = tmp_path / "target.png"
    Image.fromarray(image[::-1, ::-1]).save(target)
    return slide, target


@pytest.mark.skipif(HAS_TIATOOLBOX, reason="TIAToolbox is installed here")
def test_without_tiatoolbox_says_how_to_install(slide_and_target, tmp_path, tiny_model_dir):
    slide, target = slide_and_target
    args = ["segment", str(slide), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(
        cli, [*args, "--stain-norm", "macenko", "--stain-target", str(target)]
    )
    assert result.exit_code == 1
    assert (
        "pip install 'histobatch[tiatoolbox]'" in result.output and "Traceback" not in result.output
    )
    assert not (tmp_path / "out" / "slide").exists()


def test_stain_norm_needs_a_target(slide_and_target, tmp_path, tiny_model_dir):
    slide, _ = slide_and_target
    args = ["segment", str(slide), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, [*args, "--stain-norm", "reinhard"])
    assert result.exit_code == 1 and "--stain-norm and --stain-target go together" in result.output


@pytest.mark.skipif(not HAS_TIATOOLBOX, reason="needs histobatch[tiatoolbox] (own environment)")
@pytest.mark.parametrize("method", ["macenko", "vahadane", "ruifrok", "reinhard"])
def test_normalising_tiles_equals_cropping_the_normalised_slide(method):
    from histobatch.stain import SlideStainNormalizer

    target = np.asarray(Image.open(next(real_data("consep4", "train", "Images").glob("*.jpg"))))
    source = np.asarray(Image.open(next(real_data("monuseg-train", "Images").glob("*.png"))))
    source = source[..., :3]
    normalizer = SlideStainNormalizer(method, target).fit_source(source)
    whole = normalizer(source)
    tile = normalizer(source[100:356, 200:456])
    assert np.array_equal(whole[100:356, 200:456], tile)  # the same pixels whatever the tiling
    # Colours move towards the target's.
    assert (
        np.abs(whole.mean((0, 1)) - target.mean((0, 1))).sum()
        < np.abs(source.mean((0, 1)) - target.mean((0, 1))).sum()
    )


@pytest.mark.skipif(not HAS_TIATOOLBOX, reason="needs histobatch[tiatoolbox] (own environment)")
def test_segment_with_stain_norm(slide_and_target, tmp_path, tiny_model_dir):
    slide, target = slide_and_target
    args = ["segment", str(slide), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    args += ["--tile-size", "256", "--margin", "32", "--no-progress"]
    result = CliRunner().invoke(
        cli, [*args, "--stain-norm", "macenko", "--stain-target", str(target)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "slide" / "summary.json").read_text())
    assert summary["stain_norm"] == {"method": "macenko", "target": str(target)}


def _ome_tiff(path, image, mpp: float = 0.25):
    """A pyramidal OME-TIFF (SubIFDs) with µm/px in its OME metadata: OpenSlide sees one level."""
    import tifffile

    metadata = {"axes": "YXS", "PhysicalSizeX": mpp, "PhysicalSizeY": mpp}
    with tifffile.TiffWriter(path, ome=True) as tif:
        tif.write(image, subifds=2, tile=(256, 256), photometric="rgb", metadata=metadata)
        for level in (1, 2):
            step = 2**level
            tif.write(image[::step, ::step], tile=(256, 256), photometric="rgb", subfiletype=1)
    return path


@pytest.mark.skipif(not HAS_TIATOOLBOX, reason="needs histobatch[tiatoolbox] (own environment)")
def test_ome_tiff_pyramid_and_mpp_through_tiatoolbox(tmp_path, tiny_model_dir):
    from histobatch.slide import open_slide

    image, _ = make_disc_image(1200, 1000, 60, seed=3)
    path = _ome_tiff(tmp_path / "pyramid.ome.tiff", image)
    with open_slide(path) as slide:
        assert slide.format.startswith("tiatoolbox:")
        assert slide.level_dimensions == [(1200, 1000), (600, 500), (300, 250)]
        assert slide.mpp == pytest.approx(0.25) and slide.mpp_source == "metadata"
        expected = image[::2, ::2][120:168, 100:164]
        assert np.array_equal(slide.read_region(1, 100, 120, 64, 48), expected)
        assert slide.read_region(0, -10, -10, 5, 5).min() == 255  # outside: white
    args = ["segment", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, [*args, "--tile-size", "256", "--margin", "32"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "pyramid" / "summary.json").is_file()


@pytest.mark.skipif(HAS_TIATOOLBOX, reason="TIAToolbox is installed here")
def test_ome_tiff_without_tiatoolbox_asks_for_mpp(tmp_path, tiny_model_dir):
    image, _ = make_disc_image(600, 500, 10, seed=3)
    path = _ome_tiff(tmp_path / "pyramid.ome.tiff", image)
    args = ["segment", str(path), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "pass --mpp" in result.output
