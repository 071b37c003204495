"""Test-time flips in the Predictor: the averaged maps are the flipped-back copies' mean."""

from __future__ import annotations

import numpy as np
import pytest

from histobatch.inference import Predictor
from histobatch.model import load_model


@pytest.fixture(scope="module")
def tiles() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)


def test_flips_average_the_flipped_back_maps(tiny_model_dir, tiles):
    model = load_model(tiny_model_dir)
    plain = Predictor(model, "cpu", "fp32")
    copies = [
        plain(tiles),
        plain(np.ascontiguousarray(tiles[:, :, ::-1]))[..., ::-1],
        plain(np.ascontiguousarray(tiles[:, ::-1]))[..., ::-1, :],
        plain(np.ascontiguousarray(tiles[:, ::-1, ::-1]))[..., ::-1, ::-1],
    ]
    two = Predictor(model, "cpu", "fp32", flips=2)(tiles)
    four = Predictor(model, "cpu", "fp32", flips=4)(tiles)
    np.testing.assert_allclose(two, (copies[0] + copies[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(four, sum(copies) / 4, atol=1e-5)
    assert not np.allclose(four, copies[0], atol=1e-3)  # a random network is not flip-invariant
    assert four.shape == copies[0].shape


def test_unknown_flip_count_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="flips must be one of"):
        Predictor(load_model(tiny_model_dir), "cpu", "fp32", flips=3)
