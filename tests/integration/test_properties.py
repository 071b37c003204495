"""Property-based checks of the whole pipeline: one owner per nucleus, corrupt bytes never crash.

Hypothesis draws slide layouts, tilings and byte corruptions; each example runs the real pipeline
(oracle network for exact answers, tiny random network for the corruption runs).
"""

from __future__ import annotations

import faulthandler
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from histobatch.inference import Predictor
from histobatch.pipeline import SegmentSettings, segment_slide
from tests.conftest import make_disc_image, oracle_model, write_pyramidal_tiff

PROPERTY_SETTINGS = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def oracle():
    return Predictor(oracle_model(), "cpu", "fp32")


@PROPERTY_SETTINGS
@given(
    seed=st.integers(0, 10_000),
    core=st.sampled_from([64, 96, 128, 160, 224]),
    margin=st.sampled_from([16, 32, 48]),
    size=st.tuples(st.integers(150, 420), st.integers(150, 420)),
)
def test_every_nucleus_is_owned_by_exactly_one_tile(oracle, tmp_path, seed, core, margin, size):
    width, height = size
    image, discs = make_disc_image(width, height, 40, seed=seed)
    slide = write_pyramidal_tiff(tmp_path / f"s{seed}_{core}_{margin}.tiff", image, mpp=0.25)
    tile_size = -(-(core + 2 * margin) // 32) * 32
    settings_ = SegmentSettings(
        tile_size=tile_size, margin=margin, all_tiles=True, progress=False, overwrite=True
    )
    result = segment_slide(slide, tmp_path / "out", oracle, settings_)
    table = pd.read_parquet(result.out_dir / "nuclei.parquet")
    assert len(table) == len(discs) and table.id.is_unique
    found = table[["x", "y"]].to_numpy()
    for x, y, _, _ in discs:
        distances = np.hypot(found[:, 0] - x, found[:, 1] - y)
        assert (distances < 1.0).sum() == 1, (x, y)  # exactly one row per drawn nucleus


@pytest.fixture(scope="module")
def clean_slide(tmp_path_factory) -> Path:
    image, _ = make_disc_image(520, 400, 25, seed=11)
    path = tmp_path_factory.mktemp("clean") / "clean.tiff"
    return write_pyramidal_tiff(path, image, mpp=0.25, tile=128)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_corrupt_bytes_give_a_result_or_one_line_never_a_crash(
    clean_slide, tmp_path, tiny_model_dir, data
):
    from histobatch.runner import segment_slides

    clean_slide_bytes = clean_slide.read_bytes()
    corrupted = bytearray(clean_slide_bytes)
    n = data.draw(st.integers(1, 40), label="corrupted bytes")
    for _ in range(n):
        where = data.draw(st.integers(0, len(corrupted) - 1), label="offset")
        corrupted[where] = data.draw(st.integers(0, 255), label="value")
    cut = data.draw(st.integers(len(corrupted) // 4, len(corrupted)), label="length")
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    slide = folder / "slide.tiff"
    slide.write_bytes(bytes(corrupted[:cut]))
    good = folder / "good.tiff"
    good.write_bytes(clean_slide_bytes)
    faulthandler.dump_traceback_later(120, exit=True)  # a hang fails the suite loudly
    try:
        results = segment_slides(
            [str(slide), str(good)],
            folder / "out",
            str(tiny_model_dir),
            settings=SegmentSettings(tile_size=128, margin=32, progress=False),
        )
    finally:
        faulthandler.cancel_dump_traceback_later()
    by_name = {Path(r.path).name: r for r in results}
    assert by_name["good.tiff"].status == "done"
    outcome = by_name["slide.tiff"]
    assert outcome.status in ("done", "failed")
    if outcome.status == "failed":
        assert outcome.error.startswith(str(slide)) and "\n" not in outcome.error
        assert not (folder / "out" / "slide" / "summary.json").exists()
    else:
        assert (folder / "out" / "slide" / "summary.json").is_file()
