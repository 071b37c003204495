"""A tiny training run (synthetic CoNSeP-layout data, small encoder, a few steps)."""

import json

import numpy as np
import pytest

from histobatch.model import load_model
from histobatch.train.datasets import apply_class_map, group_of, read_consep, split_by_group
from histobatch.train.recipe import load_train_config, train
from tests.conftest import write_consep_folder


def test_class_maps():
    types = np.array([[0, 1, 2, 3], [4, 5, 6, 7]])
    assert apply_class_map(types, "consep7to4").tolist() == [[0, 1, 2, 3], [3, 4, 4, 4]]
    assert apply_class_map(types[:, :4] % 5, "identity").tolist() == [[0, 1, 2, 3], [4, 0, 1, 2]]
    assert apply_class_map(types, "none") is None


def test_split_keeps_tiles_together(tmp_path):
    write_consep_folder(tmp_path / "d", n_tiles=4, crops=3)
    samples = read_consep(tmp_path / "d", class_map="identity")
    assert group_of("train_10_003") == "train_10"
    train_set, val = split_by_group(samples, 0.25, seed=0)
    assert len(val) == 3 and len(train_set) == 9
    assert not {s.group for s in val} & {s.group for s in train_set}


def test_tiny_training_run_writes_reports_and_a_loadable_model(tmp_path):
    write_consep_folder(tmp_path / "data")
    config_path = tmp_path / "train.yaml"
    config_path.write_text(
        "name: tiny\nencoder: resnet18\ndecoder_channels: [16, 8, 8, 8, 8]\n"
        "crop_size: 64\nbatch_size: 2\nval_fraction: 0.34\nthreads: 1\n"
        "stages:\n"
        "  - {name: pretrain, epochs: 1, samples_per_epoch: 4,"
        " data: [{layout: consep, path: data, class_map: none}]}\n"
        "  - {name: heads, epochs: 1, samples_per_epoch: 4, freeze: encoder, reset_head: true,"
        " data: [{layout: consep, path: data, class_map: identity}]}\n"
    )
    config = load_train_config(config_path, out=str(tmp_path / "run"))
    model_dir = train(config, progress=False)
    run = tmp_path / "run"
    for name in ("metrics.json", "curves.png", "confusion.png", "samples.png", "checkpoint.pt"):
        assert (run / name).is_file(), name
    history = json.loads((run / "metrics.json").read_text())
    assert [h["stage"] for h in history] == ["pretrain", "heads"]
    assert "val_miou" in history[-1] and set(history[-1]["val_iou"]) == {
        "background",
        "other",
        "inflammatory",
        "epithelial",
        "spindle",
    }
    model = load_model(model_dir)
    assert model.config.provenance["recipe"][1]["freeze"] == "encoder"


def test_bad_training_config(tmp_path):
    from histobatch.errors import HistobatchError

    path = tmp_path / "c.yaml"
    path.write_text("stages: []\nbogus: 1\n")
    with pytest.raises(HistobatchError, match="bogus"):
        load_train_config(path)
