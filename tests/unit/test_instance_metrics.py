"""Nucleus metrics against cases worked out by hand."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from histobatch.instance_metrics import (
    PointMatches,
    aji,
    dice,
    instance_centroids,
    pair_points,
    panoptic_quality,
)
from histobatch.train.losses import balanced_type_weights


def _split_merge_miss():
    """Truth: A, B, C, D, F (10x10 each). Prediction: A split 60/40, B+C merged into one, D
    missed, a false nucleus E, F exact."""
    truth = np.zeros((60, 60), np.int32)
    pred = np.zeros((60, 60), np.int32)
    truth[0:10, 0:10] = 1  # A
    truth[20:30, 0:10] = 2  # B
    truth[20:30, 10:20] = 3  # C
    truth[40:50, 0:10] = 4  # D (missed)
    truth[0:10, 30:40] = 5  # F
    pred[0:10, 0:6] = 7  # A1 (60 px, IoU 0.6 with A)
    pred[0:10, 6:10] = 3  # A2 (40 px)
    pred[20:30, 0:20] = 9  # B + C merged (200 px)
    pred[40:50, 30:40] = 4  # E (false)
    pred[0:10, 30:40] = 1  # F
    return truth, pred


def test_perfect_prediction_scores_one():
    truth, _ = _split_merge_miss()
    relabelled = np.where(truth > 0, 10 - truth, 0)  # different ids, same nuclei
    assert dice(truth, relabelled) == 1.0
    assert aji(truth, relabelled) == 1.0
    pq = panoptic_quality(truth, relabelled)
    assert (pq.dq, pq.sq, pq.pq, pq.tp, pq.fp, pq.fn) == (1.0, 1.0, 1.0, 5, 0, 0)
    xy, types = instance_centroids(truth, np.where(truth > 0, 2, 0))
    matches = PointMatches()
    matches.add(xy, types, xy[::-1], types[::-1], radius=12)
    assert matches.detection_f1() == 1.0 and matches.type_f1(2) == 1.0


def test_split_merge_miss_by_hand():
    truth, pred = _split_merge_miss()
    # Dice: 500 true px, 500 predicted px, 400 shared -> 800 / 1000.
    assert dice(truth, pred) == pytest.approx(0.8)
    # AJI: pairs A-A1 (60/100), B-M (100/200), C-M (100/200), F-F (100/100); D (100 px) unpaired,
    # A2 (40) and E (100) unpaired -> 360 / (600 + 100 + 140).
    assert aji(truth, pred) == pytest.approx(360 / 840)
    # PQ: matches A-A1 (IoU 0.6) and F-F (1.0); FN B, C, D; FP A2, M, E.
    pq = panoptic_quality(truth, pred)
    assert (pq.tp, pq.fp, pq.fn) == (2, 3, 3)
    assert pq.dq == pytest.approx(2 / (2 + 1.5 + 1.5))
    assert pq.sq == pytest.approx(0.8)
    assert pq.pq == pytest.approx(0.32)


def test_iou_of_exactly_one_half_is_not_a_match():
    truth = np.zeros((10, 20), np.int32)
    truth[:, :10] = 1
    pred = np.zeros_like(truth)
    pred[:, :20] = 1  # IoU 0.5
    assert panoptic_quality(truth, pred).tp == 0


def test_empty_maps():
    empty = np.zeros((8, 8), np.int32)
    assert math.isnan(dice(empty, empty)) and math.isnan(aji(empty, empty))
    assert math.isnan(panoptic_quality(empty, empty).pq)
    some = empty.copy()
    some[2:4, 2:4] = 1
    assert aji(some, empty) == 0.0 and panoptic_quality(some, empty).pq == 0.0


def test_detection_and_type_f1_by_hand():
    truth = np.array([[0, 0], [100, 0], [200, 0], [300, 0], [400, 0], [600, 0]], float)
    truth_types = np.array([1, 2, 2, 3, 2, 3])
    pred = np.array([[3, 4], [100, 10], [250, 0], [500, 500], [400, 2], [605, 0]], float)
    pred_types = np.array([1, 3, 2, 3, 2, 3])
    matches = PointMatches()
    # Split over two "images" to check pooling.
    matches.add(truth[:3], truth_types[:3], pred[:3], pred_types[:3], radius=12)
    matches.add(truth[3:], truth_types[3:], pred[3:], pred_types[3:], radius=12)
    # Paired: (t0,p0) 5 px, (t1,p1) 10 px, (t4,p4) 2 px, (t5,p5) 5 px; t2, t3 missed; p2, p3 false.
    assert matches.counts() == {"paired": 4, "missed": 2, "false": 2}
    assert matches.detection_f1() == pytest.approx(8 / 12)
    assert matches.type_f1(1) == pytest.approx(1.0)
    # Type 2: TP_c 1 (t4), FN_c 1 (t1 called 3), FP_d 1 (p2), FN_d 1 (t2) -> 2 / (2 + 2 + 1 + 1).
    assert matches.type_f1(2) == pytest.approx(2 / 6)
    # Type 3: TP_c 1 (t5), FP_c 1 (t1 called 3), FP_d 1 (p3), FN_d 1 (t3).
    assert matches.type_f1(3) == pytest.approx(2 / 6)
    assert math.isnan(matches.type_f1(4))
    assert matches.type_accuracy() == pytest.approx(0.75)
    confusion = matches.confusion(4)
    assert confusion[2, 3] == 1 and confusion[0, 2] == 1 and confusion[3, 0] == 1
    assert confusion.sum() == 8


def test_pairing_is_one_to_one_and_minimises_total_distance():
    # Greedy nearest-first would pair t1-p0 (1 px) and leave t0 alone; the assignment pairs both.
    truth = np.array([[0.0, 0.0], [10.0, 0.0]])
    pred = np.array([[9.0, 0.0], [19.0, 0.0]])
    rows, cols, ut, up = pair_points(truth, pred, radius=12)
    assert sorted(zip(rows.tolist(), cols.tolist(), strict=True)) == [(0, 0), (1, 1)]
    assert len(ut) == 0 and len(up) == 0
    rows, _, ut, up = pair_points(truth, pred, radius=5)
    assert len(rows) == 0
    assert len(ut) == 2 and len(up) == 2


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_metrics_do_not_depend_on_label_values(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 5, (24, 24)).astype(np.int32)
    pred = rng.integers(0, 6, (24, 24)).astype(np.int32)
    permutation = np.concatenate([[0], rng.permutation(np.arange(1, 6)) + 100])
    renamed = permutation[pred]
    # PQ pairs are unique (IoU > 0.5), so PQ cannot depend on label values. (AJI can, through ties
    # in IoU on noise like this, broken by label order as in the reference implementation.)
    assert panoptic_quality(truth, pred).pq == pytest.approx(panoptic_quality(truth, renamed).pq)
    assert dice(truth, pred) == dice(truth, renamed)
    assert 0.0 <= aji(truth, pred) <= 1.0 and 0.0 <= aji(truth, renamed) <= 1.0


def test_instance_centroids_and_majority_types():
    inst = np.zeros((10, 10), np.int32)
    inst[0:2, 0:4] = 3
    inst[5:9, 5:7] = 8
    types = np.zeros_like(inst)
    types[inst == 3] = 2
    types[5:9, 5:7] = 4
    types[5, 5] = 1  # one stray pixel does not change the majority
    xy, t = instance_centroids(inst, types)
    assert xy.tolist() == [[1.5, 0.5], [5.5, 6.5]]
    assert t.tolist() == [2, 4]


def test_balanced_type_weights():
    weights = balanced_type_weights([900, 25, 100, 0])
    freq = np.array([900, 25, 100, 0]) / 1025
    # sqrt(median / freq) for present classes, median = 100 px -> [1/3, 2, 1]; absent -> max.
    raw = np.array([1 / 3, 2.0, 1.0, 2.0])
    assert weights.numpy() == pytest.approx(raw / (raw * freq).sum(), rel=1e-5)
    assert float((weights.numpy() * freq).sum()) == pytest.approx(1.0, rel=1e-5)
