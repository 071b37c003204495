"""Mixed-source training data: roles, names, include/exclude and per-source sampling weights."""

import numpy as np
import pytest

from histobatch.errors import HistobatchError
from histobatch.train.config import DataSpec
from histobatch.train.datasets import Sample, read_dataset
from histobatch.train.sources import Source, read_sources, sampling_probabilities, source_name
from tests.conftest import write_consep_folder


def _sample(name: str, side: int) -> Sample:
    return Sample(name, name, np.zeros((side, side, 3), np.uint8), np.zeros((side, side)), None)


def test_unweighted_sources_are_drawn_by_area():
    big, small = _sample("a", 4), _sample("b", 2)
    samples, p = sampling_probabilities([Source("x", [big]), Source("y", [small])])
    assert [s.name for s in samples] == ["a", "b"]
    np.testing.assert_allclose(p, [0.8, 0.2])


def test_weights_set_each_sources_share_whatever_its_area():
    sources = [
        Source("typed", [_sample("a", 8), _sample("b", 4)], weight=1),
        Source("other", [_sample("c", 2)], weight=3),
        Source("val-only", [], [_sample("d", 2)], weight=5),  # nothing to train on: no share
        Source("unweighted", [_sample("e", 2)]),  # counts as weight 1
    ]
    samples, p = sampling_probabilities(sources)
    assert [s.name for s in samples] == ["a", "b", "c", "e"]
    np.testing.assert_allclose(p, [0.2 * 64 / 80, 0.2 * 16 / 80, 0.6, 0.2])
    with pytest.raises(HistobatchError, match="positive"):
        sampling_probabilities([Source("x", [_sample("a", 2)], weight=0)])


def test_read_sources_roles_names_and_include_exclude(tmp_path):
    write_consep_folder(tmp_path / "d", n_tiles=4, crops=2)
    specs = [
        DataSpec("consep", str(tmp_path / "d"), "identity", name="main", exclude="train_3_*"),
        DataSpec(
            "consep",
            str(tmp_path / "d"),
            "none",
            name="held-out",
            role="val",
            include=["train_3_*"],
        ),
        DataSpec(
            "consep",
            str(tmp_path / "d"),
            "none",
            role="all",
            include=["train_0_*", "train_1_*"],
            weight=2.0,
        ),
    ]
    main, held_out, extra = read_sources(specs, val_fraction=0.34, seed=0)
    assert main.name == "main" and len(main.train) == 4 and len(main.val) == 2
    assert not {s.group for s in main.train} & {s.group for s in main.val}
    assert all(s.type_map is not None for s in main.train)
    assert held_out.train == [] and {s.name for s in held_out.val} == {"train_3_000", "train_3_001"}
    assert all(s.type_map is None for s in held_out.val)
    assert extra.name == "d[train_0_*,train_1_*]" and extra.val == [] and len(extra.train) == 4
    assert extra.weight == 2.0
    with pytest.raises(HistobatchError, match="role"):
        read_sources([DataSpec("consep", str(tmp_path / "d"), role="test")], 0.2, 0)


def test_sources_with_one_name_are_one_source(tmp_path):
    write_consep_folder(tmp_path / "d", n_tiles=2, crops=2)
    specs = [
        DataSpec(
            "consep", str(tmp_path / "d"), name="s", include="train_0_*", role="all", weight=0.5
        ),
        DataSpec(
            "consep", str(tmp_path / "d"), name="s", include="train_1_*", role="all", scale=0.5
        ),
    ]
    (source,) = read_sources(specs, 0.2, 0)
    assert len(source.train) == 4 and source.weight == 0.5
    assert sorted(s.image.shape[0] for s in source.train) == [32, 32, 64, 64]
    assert source_name(DataSpec("consep", "/x/tnbc")) == "tnbc"


def test_read_dataset_include_and_exclude_lists(tmp_path):
    write_consep_folder(tmp_path / "d", n_tiles=3, crops=1)
    kept = read_dataset(
        "consep", tmp_path / "d", "none", include=["train_0*", "train_2*"], exclude="train_2*"
    )
    assert [s.name for s in kept] == ["train_0_000"]
