import numpy as np
import pytest

from histobatch.metrics import confusion_matrix, pixel_scores
from histobatch.stats import type_statistics


def test_type_statistics():
    stats = type_statistics(
        np.array([1, 1, 3]),
        np.array([10.0, 30.0, 5.0]),
        ["background", "other", "inflammatory", "epithelial"],
        2.0,
    )
    assert stats["other"] == {
        "count": 2,
        "fraction": pytest.approx(2 / 3),
        "density_per_mm2": 1.0,
        "mean_area_um2": 20.0,
    }
    assert stats["inflammatory"]["count"] == 0 and stats["inflammatory"]["mean_area_um2"] is None


def test_pixel_scores_by_hand():
    truth = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    confusion = confusion_matrix(truth, pred, 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    scores = pixel_scores(confusion, ["bg", "a", "b"])
    assert scores["pixel_accuracy"] == pytest.approx(4 / 6)
    assert scores["iou"] == pytest.approx({"bg": 1 / 3, "a": 2 / 3, "b": 1 / 2})
    assert scores["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
