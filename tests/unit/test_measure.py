"""Whole-image nucleus measurements equal scikit-image's regionprops, label by label."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import ellipse
from skimage.measure import regionprops

from histobatch.measure import label_centroids, measure_labels

COLUMNS = {
    "area": "area",
    "perimeter": "perimeter",
    "eccentricity": "eccentricity",
    "solidity": "solidity",
}


def _touching_ellipses(seed: int, shape=(160, 190), count=60) -> np.ndarray:
    """Random ellipses (some touching, some cut by the image edge, some overwritten into
    non-convex pieces), labels 1..n with gaps where a later ellipse covered an earlier one."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for label in range(1, count + 1):
        cy, cx = rng.uniform(-5, shape[0] + 5), rng.uniform(-5, shape[1] + 5)
        ry, rx = rng.uniform(1, 12), rng.uniform(1, 12)
        rr, cc = ellipse(cy, cx, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
        labels[rr, cc] = label
    labels[rng.integers(0, shape[0], 5), rng.integers(0, shape[1], 5)] = count + 1  # 1-px pieces
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_measurements_equal_regionprops(seed):
    labels = _touching_ellipses(seed)
    measured = measure_labels(labels)
    props = {p.label: p for p in regionprops(labels)}
    assert len(props) > 20
    for label in range(1, int(labels.max()) + 1):
        i = label - 1
        if label not in props:  # covered by later ellipses: reported as zeros
            assert measured["area"][i] == 0 and measured["solidity"][i] == 0
            continue
        prop = props[label]
        assert measured["cy"][i] == pytest.approx(prop.centroid[0])
        assert measured["cx"][i] == pytest.approx(prop.centroid[1])
        for column, attribute in COLUMNS.items():
            assert measured[column][i] == pytest.approx(getattr(prop, attribute), abs=1e-9), (
                column,
                label,
            )


def test_selected_ids_and_centroids():
    labels = _touching_ellipses(7)
    everything = measure_labels(labels)
    chosen = np.array([5, 2, 9])
    some = measure_labels(labels, chosen)
    for column in COLUMNS:
        np.testing.assert_allclose(some[column], everything[column][chosen - 1])
    cy, cx, area = label_centroids(labels)
    np.testing.assert_allclose(cy, everything["cy"])
    np.testing.assert_allclose(cx, everything["cx"])
    np.testing.assert_array_equal(area, everything["area"])


def test_empty_and_out_of_range():
    measured = measure_labels(np.zeros((8, 8), np.int32), np.array([1, 3]))
    assert all((v == 0).all() and len(v) == 2 for v in measured.values())
