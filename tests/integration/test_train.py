"""A tiny training run (synthetic CoNSeP-layout data, small encoder, a few steps)."""

import json
from pathlib import Path

import numpy as np
import pytest

from histobatch.model import load_model
from histobatch.train.datasets import apply_class_map, group_of, read_consep, split_by_group
from histobatch.train.recipe import load_train_config, train
from tests.conftest import real_data, write_consep_folder

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("separation", ["hv", "distance", "marker"])
def test_tiny_training_run_writes_reports_and_a_loadable_model(tmp_path, separation):
    write_consep_folder(tmp_path / "data")
    config_path = tmp_path / "train.yaml"
    config_path.write_text(
        f"name: tiny\nencoder: resnet18\ndecoder_channels: [16, 8, 8, 8, 8]\n"
        f"separation: {separation}\n"
        "crop_size: 64\nbatch_size: 2\nval_fraction: 0.34\nthreads: 1\n"
        f"contact_weight: {4 if separation == 'distance' else 0}\n"
        "stages:\n"
        "  - {name: pretrain, epochs: 1, samples_per_epoch: 4,"
        " data: [{layout: consep, path: data, class_map: none}]}\n"
        "  - {name: heads, epochs: 1, samples_per_epoch: 4, freeze: encoder, reset_head: true,"
        " type_weights: balanced, data: [{layout: consep, path: data, class_map: identity}]}\n"
    )
    config = load_train_config(config_path, out=str(tmp_path / "run"))
    model_dir = train(config, progress=False)
    run = tmp_path / "run"
    reports = ("metrics.json", "curves.png", "confusion.png", "samples.png", "checkpoint.pt")
    for name in (*reports, "postprocess_tuning.json"):
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
    assert {"val_aji", "val_pq", "val_f_d", "val_f_c"} <= set(history[-1])
    model = load_model(model_dir)
    assert model.config.provenance["recipe"][1]["freeze"] == "encoder"
    assert model.config.separation == separation
    assert model.config.provenance["contact_weight"] == (4 if separation == "distance" else 0)
    assert model.config.n_outputs == 1 + (2 if separation == "hv" else 1) + 5
    tuning = json.loads((run / "postprocess_tuning.json").read_text())
    best = max(tuning, key=lambda row: (row["pq"], row["aji"]))
    assert model.config.postprocess.np_threshold == best["np_threshold"]
    assert model.config.postprocess.marker_threshold == best["marker_threshold"]


def test_tiny_run_resumes_and_exports(tmp_path):
    """Interrupt after the first stage (simulated by a one-stage config), then resume the full
    recipe: the history continues and the model folder is written; --export rewrites it."""
    write_consep_folder(tmp_path / "data")
    head = (
        "name: tiny\nencoder: resnet18\ndecoder_channels: [16, 8, 8, 8, 8]\nseparation: distance\n"
        "crop_size: 64\nbatch_size: 2\nval_fraction: 0.34\nthreads: 1\nstages:\n"
        "  - {name: a, epochs: 1, samples_per_epoch: 4,"
        " data: [{layout: consep, path: data, class_map: identity}]}\n"
    )
    (tmp_path / "one.yaml").write_text(head)
    (tmp_path / "two.yaml").write_text(
        head + "  - {name: b, epochs: 1, samples_per_epoch: 4,"
        " data: [{layout: consep, path: data, class_map: identity}]}\n"
    )
    run = str(tmp_path / "run")
    train(load_train_config(tmp_path / "one.yaml", out=run), progress=False)
    model_dir = train(
        load_train_config(tmp_path / "two.yaml", out=run), resume=True, progress=False
    )
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [h["stage"] for h in history] == ["a", "b"]
    (model_dir / "config.json").unlink()
    train(load_train_config(tmp_path / "two.yaml", out=run), export_only=True, progress=False)
    exported = load_model(model_dir)
    assert exported.config.provenance["epochs_trained"] == {"a": 1, "b": 1}
    assert "val_pq" in exported.config.metrics["validation"]


def test_crop_workers_give_a_reproducible_run(tmp_path):
    """With loader workers (as on a GPU machine) two runs of one config train the same weights,
    and the workers' crops differ from each other (each worker has its own augmentation seed)."""
    import torch

    write_consep_folder(tmp_path / "data")
    (tmp_path / "w.yaml").write_text(
        "name: tiny\nencoder: resnet18\ndecoder_channels: [16, 8, 8, 8, 8]\nseparation: distance\n"
        "crop_size: 32\nbatch_size: 2\nval_fraction: 0.34\nthreads: 1\nworkers: 2\n"
        "tune_postprocess: false\nstages:\n"
        "  - {name: a, epochs: 1, samples_per_epoch: 8,"
        " data: [{layout: consep, path: data, class_map: identity}]}\n"
    )
    weights = []
    for name in ("one", "two"):
        config = load_train_config(tmp_path / "w.yaml", out=str(tmp_path / name))
        train(config, progress=False)
        state = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"]
        weights.append(torch.cat([v.float().ravel() for v in state.values()]))
    assert torch.equal(weights[0], weights[1])

    from histobatch.train.augment import build_augmentation
    from histobatch.train.data import CropDataset
    from histobatch.train.datasets import read_consep
    from histobatch.train.recipe import _WorkerSeeder

    samples = read_consep(tmp_path / "data", "identity")[:1]
    dataset = CropDataset(samples, build_augmentation("default", 32), [0.5] * 3, [0.2] * 3, 4)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=2, num_workers=2, worker_init_fn=_WorkerSeeder(7)
    )
    first, second = (batch[0] for batch in loader)  # one batch from each worker
    assert not torch.equal(first, second)


def test_config_paths_expand_variables_and_resolve_against_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("HB_TEST_DATA", str(tmp_path / "data"))
    (tmp_path / "cfg").mkdir()
    path = tmp_path / "cfg" / "c.yaml"
    path.write_text(
        "out: $HB_TEST_DATA/../runs/x\nstages:\n  - name: a\n    data:\n"
        "      - {layout: consep, path: $HB_TEST_DATA/consep4/train}\n"
        "      - {layout: consep, path: ../rel}\n"
    )
    config = load_train_config(path)
    assert config.out == str(tmp_path / "data" / ".." / "runs" / "x")
    paths = [spec.path for spec in config.stages[0].data]
    assert paths == [str(tmp_path / "data" / "consep4" / "train"), str(tmp_path / "rel")]
    assert config.init == "none"
    path.write_text(path.read_text() + "init: ../models/previous\n")
    assert load_train_config(path).init == str(tmp_path / "models" / "previous")
    assert load_train_config(path, init="imagenet").init == "imagenet"


def test_bad_training_config(tmp_path):
    from histobatch.errors import HistobatchError

    path = tmp_path / "c.yaml"
    path.write_text("stages: []\nbogus: 1\n")
    with pytest.raises(HistobatchError, match="bogus"):
        load_train_config(path)


def test_train_command_rejects_an_unknown_stage(tmp_path):
    from click.testing import CliRunner

    from histobatch.cli.main import cli

    config = tmp_path / "c.yaml"
    config.write_text(
        "stages:\n  - {name: finetune, data: [{layout: consep, path: d, class_map: identity}]}\n"
    )
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--stages", "pretrain"])
    assert result.exit_code != 0
    assert "no stage named pretrain" in result.output and "finetune" in result.output


@pytest.mark.parametrize("strength", ["none", "default", "stain"])
def test_augmentation_moves_image_and_masks_together(strength):
    from histobatch.train.augment import build_augmentation

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
    inst = np.zeros((48, 48), np.int32)
    inst[5:15, 30:44] = 7  # an asymmetric block: flips and rotations move it
    transform = build_augmentation(strength, crop_size=48)
    for seed in range(5):
        transform.set_random_seed(seed)
        out = transform(image=image, masks=[inst, inst * 2])
        moved, doubled = out["masks"]
        assert out["image"].shape == (48, 48, 3) and out["image"].dtype == np.uint8
        assert (np.asarray(moved) == 7).sum() == 140  # exact transforms: no resampling of labels
        assert np.array_equal(np.asarray(doubled), np.asarray(moved) * 2)
    with pytest.raises(ValueError, match="stain"):
        build_augmentation("strong")


def test_robust_augmentation_rescales_image_and_masks_together():
    """``robust`` rescales isotropically (0.8-1.25): image, instance and type maps stay aligned
    and nuclei change area by at most the squared scale range."""
    from histobatch.train.augment import SCALE_RANGE, build_augmentation

    image = np.full((64, 64, 3), 230, np.uint8)
    inst = np.zeros((64, 64), np.int32)
    inst[22:42, 22:42] = 3  # a centred 20x20 block: 400 px
    image[inst > 0] = (60, 20, 120)
    transform = build_augmentation("robust", crop_size=64)
    areas = set()
    for seed in range(12):
        transform.set_random_seed(seed)
        out = transform(image=image, masks=[inst, inst * 2])
        moved, doubled = (np.asarray(m) for m in out["masks"])
        assert out["image"].shape == (64, 64, 3) and moved.dtype == np.int32
        assert set(np.unique(moved)) <= {0, 3}  # nearest: no new label values
        assert np.array_equal(doubled, moved * 2)
        area = int((moved == 3).sum())
        low, high = SCALE_RANGE
        assert 400 * low**2 * 0.9 <= area <= 400 * high**2 * 1.1
        areas.add(area)
        # The dark block in the image is where the mask is (stain and colour jitter included).
        grey = out["image"].astype(float).mean(axis=2)
        assert grey[moved == 3].mean() < grey[moved == 0].mean() - 40
    assert len(areas) > 3  # the scale does vary


def test_a_stage_can_stop_part_way_through_a_longer_schedule(tmp_path):
    """``schedule_epochs`` > ``epochs``: the stage ends with the learning rate of a longer
    one-cycle schedule at that point (not annealed), as that longer run would have it."""
    import torch

    write_consep_folder(tmp_path / "data")
    rates = {}
    for name, extra in (("short", ""), ("part", " schedule_epochs: 4,")):
        (tmp_path / f"{name}.yaml").write_text(
            "name: tiny\nencoder: resnet18\ndecoder_channels: [16, 8, 8, 8, 8]\n"
            "separation: distance\ncrop_size: 32\nbatch_size: 2\nval_fraction: 0\nthreads: 1\n"
            "tune_postprocess: false\nstages:\n"
            f"  - {{name: a, epochs: 1,{extra} lr: 0.01, samples_per_epoch: 8,"
            " data: [{layout: consep, path: data, class_map: identity}]}\n"
        )
        config = load_train_config(tmp_path / f"{name}.yaml", out=str(tmp_path / name))
        assert config.stages[0].schedule_epochs == (4 if name == "part" else None)
        train(config, progress=False)
        state = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
        history = state["history"]
        assert [h["epoch"] for h in history] == [1]
        rates[name] = history[0]["lr_end"]
    # The whole one-cycle ends annealed; a quarter of a 4-epoch cycle is just past its peak
    # (10 % warm-up).
    assert 0.008 < rates["part"] <= 0.01
    assert rates["short"] < 0.25 * rates["part"]


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "examples").glob("train_*.yaml")))
def test_example_training_configs_load_and_name_existing_data(name, monkeypatch):
    """Every shipped recipe parses, and its datasets and init weights are where it says (the
    recipes name ../shared/data relative to the checkout, or $HISTOBATCH_DATA)."""
    data = real_data()
    monkeypatch.setenv("HISTOBATCH_DATA", str(data))
    config = load_train_config(ROOT / "examples" / name)
    paths = {spec.path for stage in config.stages for spec in stage.data}
    if not all(Path(p).resolve().is_relative_to(data.resolve()) for p in paths):
        pytest.skip(f"{name} names ../shared/data beside the checkout, not {data}")
    for path in paths:
        assert Path(path).exists(), f"{name}: {path}"
    if config.init not in ("none", "imagenet"):
        assert Path(config.init).exists(), f"{name}: init {config.init}"
