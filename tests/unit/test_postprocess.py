import numpy as np
import pytest

from histobatch.model import PostprocessConfig
from histobatch.postprocess import instance_types, instances_from_maps
from histobatch.targets import (
    contact_pixels,
    distance_maps,
    hv_maps,
    separation_targets,
    type_map_from_instances,
)
from tests.conftest import real_data


def _iou_matches(truth: np.ndarray, pred: np.ndarray, min_area: int = 12) -> tuple[int, int]:
    matched = total = 0
    for label in range(1, int(truth.max()) + 1):
        mask = truth == label
        if mask.sum() < min_area:
            continue
        total += 1
        ids, counts = np.unique(pred[mask], return_counts=True)
        best = max(
            (
                c / np.logical_or(mask, pred == i).sum()
                for i, c in zip(ids, counts, strict=True)
                if i
            ),
            default=0,
        )
        matched += best > 0.5
    return matched, total


def _perfect_maps(inst: np.ndarray, types: np.ndarray, separation: str = "hv", n_classes: int = 5):
    """Maps as the predictor returns them, from a perfect network's output."""
    import torch

    from histobatch.inference import centre_distance

    np_prob = (inst > 0).astype(np.float32)
    tp = np.stack([(types == c).astype(np.float32) for c in range(n_classes)])
    raw = torch.from_numpy(separation_targets(inst, separation))[None]
    if separation == "marker":  # a confident core logit
        raw = 20 * raw - 10
    return np_prob, centre_distance(raw, separation)[0, 0].numpy(), tp


def test_hv_maps_range_and_sign():
    inst = np.zeros((20, 20), np.int32)
    inst[2:9, 3:12] = 1
    inst[10:18, 10:14] = 2
    hv = hv_maps(inst)
    assert hv.shape == (2, 20, 20)
    assert hv[:, inst == 0].max() == 0
    for label in (1, 2):
        h = hv[0][inst == label]
        assert h.min() == pytest.approx(-1) and h.max() == pytest.approx(1)
    # Left of the centre is negative, right positive.
    assert hv[0, 5, 3] < 0 < hv[0, 5, 11]


def test_distance_maps_peak_at_centres_and_dip_at_contacts():
    inst = np.zeros((40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    inst[((yy - 20) ** 2 + (xx - 38) ** 2 <= 100) & (inst == 0)] = 2
    d = distance_maps(inst)[0]
    assert d[inst == 0].max() == 0 and d.max() == pytest.approx(1)
    assert d[20, 20] == pytest.approx(1) and d[20, 38] > 0.8
    assert max(d[20, 28], d[20, 29]) < 0.25  # the contact line between the two nuclei


@pytest.mark.parametrize("separation", ["hv", "distance", "marker"])
def test_touching_nuclei_are_split(separation):
    inst = np.zeros((40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    inst[((yy - 20) ** 2 + (xx - 38) ** 2 <= 100) & (inst == 0)] = 2  # touches nucleus 1
    types = type_map_from_instances(inst, np.array([2, 3]))
    result = instances_from_maps(*_perfect_maps(inst, types, separation))
    assert result.labels.max() == 2
    assert sorted(result.types.tolist()) == [2, 3]
    assert _iou_matches(inst, result.labels) == (2, 2)


def test_empty_maps_give_no_instances():
    result = instances_from_maps(np.zeros((32, 32)), np.ones((32, 32)), np.zeros((5, 32, 32)))
    assert result.labels.max() == 0 and len(result.types) == 0


def test_instance_type_is_majority_with_mean_probability():
    labels = np.array([[1, 1, 1, 0]])
    tp = np.zeros((5, 1, 4))
    tp[2, 0, :2] = 0.9
    tp[0, 0, :2] = 0.1
    tp[3, 0, 2] = 0.6
    tp[0, 0, 2] = 0.4
    types, probs = instance_types(labels, tp)
    assert types.tolist() == [2]
    assert probs[0] == pytest.approx((0.9 + 0.9 + 0.0) / 3)


@pytest.mark.parametrize("separation", ["hv", "distance", "marker"])
def test_perfect_maps_recover_consep_instances(separation):
    """From ground-truth maps, post-processing must give back almost every real nucleus."""
    from histobatch.train.datasets import read_consep

    samples = read_consep(real_data("consep4", "train"), class_map="identity")[:24]
    matched = total = 0
    for sample in samples:
        result = instances_from_maps(
            *_perfect_maps(sample.inst_map, sample.type_map, separation), PostprocessConfig()
        )
        m, t = _iou_matches(sample.inst_map, result.labels)
        matched += m
        total += t
    assert total > 500
    print(f"{separation}: {matched}/{total} = {matched / total:.4f}")
    assert matched / total >= 0.97


def test_marker_cores_are_apart_where_nuclei_touch_and_drive_their_loss():
    import torch

    from histobatch.train.losses import marker_loss

    inst = np.zeros((40, 60), np.int32)
    yy, xx = np.mgrid[:40, :60]
    inst[(yy - 20) ** 2 + (xx - 20) ** 2 <= 100] = 1
    inst[((yy - 20) ** 2 + (xx - 38) ** 2 <= 100) & (inst == 0)] = 2
    cores = separation_targets(inst, "marker")
    assert cores.shape == (1, 40, 60) and set(np.unique(cores)) == {0.0, 1.0}
    assert not cores[0, inst == 0].any() and cores[0, 20, 20] == 1 and cores[0, 20, 38] == 1
    assert not cores[0, 20, 26:32].any()  # the contact line and its surroundings
    from scipy import ndimage as ndi

    assert ndi.label(cores[0])[1] == 2
    target = torch.from_numpy(cores)[None]
    nuclear = torch.from_numpy(inst > 0)[None]
    right, wrong = 20 * target - 10, 10 - 20 * target
    assert marker_loss(right, target, nuclear) < 0.01 < 1 < marker_loss(wrong, target, nuclear)


def test_contact_pixels_mark_only_where_nuclei_touch():
    inst = np.zeros((12, 20), np.int32)
    inst[2:8, 2:8] = 1  # touches 2 along column 7|8
    inst[2:8, 8:14] = 2
    inst[2:8, 16:19] = 3  # alone, 2 px of background from nucleus 2
    contact = contact_pixels(inst)
    assert contact.dtype == bool
    assert np.array_equal(np.nonzero(contact.any(axis=0))[0], [7, 8])
    assert contact[2:8, 7].all() and contact[2:8, 8].all() and contact.sum() == 12
    wide = contact_pixels(inst, width=2)
    assert np.array_equal(np.nonzero(wide.any(axis=0))[0], [6, 7, 8, 9])
    assert not contact_pixels(np.where(inst == 3, 3, 0)).any()


def test_contact_weight_raises_the_separation_loss_only_on_contact_errors():
    import torch

    from histobatch.train.losses import distance_loss

    inst = np.zeros((16, 16), np.int32)
    inst[4:12, 2:8] = 1
    inst[4:12, 8:14] = 2
    target = torch.from_numpy(distance_maps(inst))[None]
    nuclear = torch.from_numpy(inst > 0)[None]
    contact = torch.from_numpy(contact_pixels(inst))[None]
    ones = torch.ones(1, 16, 16)
    weighted = ones + 4 * contact.float()
    assert torch.allclose(
        distance_loss(target + 0.1, target, nuclear, ones),
        distance_loss(target + 0.1, target, nuclear),
    )
    at_contact = target.clone()
    at_contact[0, 0][contact[0]] += 0.5
    elsewhere = target.clone()
    far = (inst == 1) & ~contact_pixels(inst, width=2)
    elsewhere[0, 0][torch.from_numpy(far)] += 0.5 * np.sqrt(contact.sum().item() / far.sum())
    plain = (distance_loss(at_contact, target, nuclear), distance_loss(elsewhere, target, nuclear))
    assert torch.isclose(plain[0], plain[1], rtol=1e-4)  # same squared error in total
    boosted = (
        distance_loss(at_contact, target, nuclear, weighted),
        distance_loss(elsewhere, target, nuclear, weighted),
    )
    assert boosted[0] > 2 * boosted[1]


def test_np_type_power_weights_missed_rare_nuclei_up_and_leaves_untyped_crops_alone():
    import torch

    from histobatch.train.losses import nucleus_loss

    inst = np.zeros((1, 16, 16), np.int64)
    inst[0, 2:6, 2:6] = 1  # a common type (weight 1)
    inst[0, 10:14, 10:14] = 2  # a rare type (weight 9)
    types = np.where(inst == 1, 1, np.where(inst == 2, 2, 0))
    np_target = torch.from_numpy((inst > 0).astype(np.float32))
    sep = torch.from_numpy(separation_targets(inst[0], "marker"))[None]
    tp = torch.from_numpy(types)
    weights = torch.tensor([1.0, 1.0, 9.0])

    def loss(missed_label: int, has_types: bool, power: float) -> float:
        out = torch.zeros(1, 2 + 3, 16, 16)
        out[:, 0] = torch.where(np_target[0] > 0, 6.0, -6.0)  # np right everywhere ...
        out[:, 0][torch.from_numpy(inst == missed_label)] = -6.0  # ... but one nucleus missed
        _, parts = nucleus_loss(
            out,
            np_target,
            sep,
            tp,
            torch.tensor([has_types]),
            weights,
            "marker",
            np_type_power=power,
        )
        return parts["np"]

    # unweighted, missing either nucleus costs the same; weighted, the rare one's BCE is 3x
    # (the Dice part is unweighted and the same in both cases)
    plain = loss(1, True, 0.0)
    assert loss(2, True, 0.0) == pytest.approx(plain)
    assert loss(1, True, 0.5) == pytest.approx(plain, rel=0.01)
    assert loss(2, True, 0.5) - plain > 0.5
    # crops without type labels keep the plain loss whatever the power
    assert loss(2, False, 0.5) == pytest.approx(loss(2, False, 0.0))
