"""The packaged default model on real H&E: tile invariance of the real network (the margin must
cover its context) and sane nucleus statistics. Skips when the model or the data is absent."""

import pandas as pd
import pytest

from histobatch.model import load_model
from histobatch.pipeline import SegmentSettings, segment_slide
from tests.conftest import match_centroids, real_data, write_pyramidal_tiff


@pytest.fixture(scope="module")
def default_predictor():
    from histobatch.errors import ModelError
    from histobatch.inference import Predictor

    try:
        model = load_model("default")
    except ModelError as exc:
        pytest.skip(f"no packaged default model: {exc}")
    return Predictor(model, "cpu", "fp32")


@pytest.fixture(scope="module")
def cmu_crop(tmp_path_factory):
    """A 640x640 level-0 crop of the real CMU slide (0.499 µm/px) as a pyramidal TIFF."""
    from histobatch.slide import open_slide

    with open_slide(real_data("slides", "cmu-1-small-region.svs")) as slide:
        pixels = slide.read_region(0, 900, 1300, 640, 640)
    folder = tmp_path_factory.mktemp("cmu")
    return write_pyramidal_tiff(folder / "cmu_crop.tiff", pixels, mpp=0.499)


def test_real_model_is_tile_invariant(cmu_crop, tmp_path, default_predictor):
    results = []
    # The default margin (96 µm: 384 model px for the 40x model) must cover the network's
    # context: measured on this crop, 192 px (48 µm) matched 91 % of nuclei across tilings.
    for tile_size in (1024, 1664):
        settings = SegmentSettings(tile_size=tile_size, batch_size=1, progress=False)
        result = segment_slide(cmu_crop, tmp_path / str(tile_size), default_predictor, settings)
        results.append(pd.read_parquet(result.out_dir / "nuclei.parquet"))
    a, b = results
    assert len(a) > 100  # enough real nuclei for the comparison to mean something
    pairs = match_centroids(a, b, tol=2.0)
    assert len(pairs) >= 0.99 * max(len(a), len(b))
    same_type = sum(a.type_id.iloc[i] == b.type_id.iloc[j] for i, j in pairs)
    assert same_type >= 0.99 * len(pairs)


def test_real_model_statistics_are_plausible(cmu_crop, tmp_path, default_predictor):
    settings = SegmentSettings(tile_size=1024, progress=False)
    result = segment_slide(cmu_crop, tmp_path, default_predictor, settings)
    table = pd.read_parquet(result.out_dir / "nuclei.parquet")
    # Nuclei in H&E are a few to a few hundred µm²; the median is tens of µm². Model 0.3.0 gave
    # 7.5 µm² on this crop (dark cores only), 0.4.0 13.2 (17.6 on the whole slide).
    assert 10 < table.area_um2.median() < 120
    assert table.type.nunique() >= 2


def test_evaluate_reproduces_the_model_card(default_predictor, tmp_path):
    """The packaged model's recorded consep4 test numbers come back from `histobatch evaluate`."""
    from histobatch.evaluate import evaluate_dataset

    data = real_data("consep4", "test")
    recorded = default_predictor.model.config.metrics["test"]
    metrics = evaluate_dataset(data, default_predictor, tmp_path, progress=False)
    assert metrics["n_images"] == recorded["n_images"] == 224
    for key in ("dice", "aji", "pq", "f_d", "miou"):
        assert metrics[key] == pytest.approx(recorded[key], abs=0.002), key
    for name, value in recorded["f_c"].items():
        assert metrics["f_c"][name] == pytest.approx(value, abs=0.005), name
