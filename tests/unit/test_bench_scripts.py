"""Bench scripts: the ablation variants' configs and the promotion of a model (no training)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ablation(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import ablation as module

    return module


def _folders(stage: dict) -> list[tuple[str, str]]:
    return [(Path(spec["path"]).name, spec["role"]) for spec in stage["data"]]


def test_no_added_data_drops_only_the_added_training_sets(ablation, tmp_path):
    base = ROOT / "examples" / "train_mixed.yaml"
    recipe = ablation.variant_config(base, "recipe", tmp_path, None)
    variant = ablation.variant_config(base, "no-added-data", tmp_path, None)
    assert [s["name"] for s in variant["stages"]] == [s["name"] for s in recipe["stages"]]
    for full, reduced in zip(recipe["stages"], variant["stages"], strict=True):
        kept = _folders(reduced)
        expected = [
            (name, role)
            for name, role in _folders(full)
            if role == "val" or name not in ablation.ADDED_SETS
        ]
        assert kept == expected
        assert not any(name == "tnbc" for name, _ in kept)
    finetune = _folders(variant["stages"][2])
    assert ("monuseg-train-extra", "val") in finetune  # the held-out organs are still scored
    assert ("consep4", "train") not in finetune  # consep4's folder is consep4/train
    assert ("train", "train") in finetune and ("monuseg-train", "all") in finetune
    assert variant["stages"][-1]["epochs"] == recipe["stages"][-1]["epochs"]  # budget unchanged


def test_unknown_variant_is_refused(ablation, tmp_path):
    with pytest.raises(SystemExit, match="unknown variant"):
        ablation.variant_config(ROOT / "examples" / "train_mixed.yaml", "nope", tmp_path, None)


def test_promoted_config_extends_the_lineage(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from promote_model import promoted_config

    current = {
        "version": "0.4.0",
        "provenance": {"lineage": [{"version": "0.4.0", "train_time_s": 100.0}]},
    }
    candidate = {
        "version": "0",
        "separation": "marker",
        "provenance": {
            "train_time_s": 50.0,
            "epochs_trained": {"finetune": 3},
            "init": str(tmp_path / "default"),
        },
        "metrics": {"test": {"pq": 0.1}, "validation": {"val_pq": 0.3}},
    }
    config = promoted_config(candidate, current, "0.5.0", "examples/x.yaml", tmp_path / "default")
    assert config["version"] == "0.5.0"
    assert [s["version"] for s in config["provenance"]["lineage"]] == ["0.4.0", "0.5.0"]
    assert config["provenance"]["lineage"][-1]["epochs_trained"] == {"finetune": 3}
    assert config["provenance"]["train_time_total_s"] == 150.0
    assert config["provenance"]["init"] == "histobatch/models/default: model 0.4.0"  # no paths
    assert "test" not in config["metrics"] and config["metrics"]["validation"]["val_pq"] == 0.3
    assert candidate["version"] == "0"  # the run's own config is not changed
