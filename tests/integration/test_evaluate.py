"""``histobatch evaluate``: exact scores for a model whose answer is known, the report files, the
command line, and the packaged model on real CoNSeP crops."""

import json
import math

import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from histobatch.evaluate import EvaluateSettings, evaluate_dataset
from histobatch.inference import Predictor
from histobatch.model import load_model
from tests.conftest import oracle_model, real_data, write_consep_folder


@pytest.fixture(scope="module")
def consep_like(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "test"
    write_consep_folder(folder, n_tiles=2, crops=2, size=160, seed=3)
    return folder


def test_oracle_model_scores_one(consep_like, tmp_path):
    predictor = Predictor(oracle_model(), "cpu", "fp32")
    metrics = evaluate_dataset(
        consep_like, predictor, tmp_path / "metrics.json", EvaluateSettings(margin=32), False
    )
    assert metrics["n_images"] == 4
    for key in ("dice", "aji", "dq", "sq", "pq", "f_d", "type_accuracy"):
        assert metrics[key] == pytest.approx(1.0), key
    # The synthetic nuclei are inflammatory (red) or epithelial (blue); the others never occur.
    assert metrics["f_c"]["inflammatory"] == 1.0 and metrics["f_c"]["epithelial"] == 1.0
    assert math.isnan(metrics["f_c"]["other"]) and math.isnan(metrics["f_c"]["spindle"])
    assert metrics["iou"]["background"] == 1.0 and metrics["pixel_accuracy"] == 1.0
    assert metrics["nuclei"]["missed"] == 0 and metrics["nuclei"]["false"] == 0
    for name in ("metrics.json", "confusion.png", "confusion_nuclei.png", "samples.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    rows = (tmp_path / "per_image.csv").read_text().splitlines()
    assert len(rows) == 5 and rows[0].startswith("image,true_nuclei,predicted_nuclei,dice")
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["pq"] == metrics["pq"]


def test_evaluate_command_with_a_small_model(consep_like, tiny_model_dir, tmp_path):
    out = tmp_path / "eval" / "metrics.json"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--data",
            str(consep_like),
            "--model",
            str(tiny_model_dir),
            "--out",
            str(out),
            "--limit",
            "2",
            "--threads",
            "1",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "2 images" in result.output and "F_c" in result.output
    metrics = json.loads(out.read_text())
    expected = {"dice", "aji", "dq", "sq", "pq", "f_d", "f_c", "pixel_accuracy", "iou", "miou"}
    assert expected <= set(metrics)
    assert set(metrics["f_c"]) == {"other", "inflammatory", "epithelial", "spindle"}


def test_evaluate_names_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "Images").mkdir()
    result = CliRunner().invoke(cli, ["evaluate", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "no images found" in result.output and str(tmp_path) in result.output


def test_default_model_on_real_consep_crops(tmp_path):
    data = real_data("consep4", "test")
    predictor = Predictor(load_model("default"), "cpu", "fp32")
    metrics = evaluate_dataset(data, predictor, tmp_path, EvaluateSettings(limit=3), False)
    assert metrics["n_images"] == 3
    for key in ("dice", "aji", "pq", "f_d", "pixel_accuracy", "miou"):
        assert 0.0 < metrics[key] <= 1.0, key
    # A real nucleus model finds most nuclear pixels on its own training domain.
    assert metrics["dice"] > 0.6


def test_evaluate_scores_exactly_what_segment_writes(consep_like, tiny_model_dir, tmp_path):
    """One scoring path: `evaluate` gives the scores of the masks that `histobatch segment
    IMAGE --mpp 0.25` (its defaults) writes for the same images."""
    import numpy as np
    import pandas as pd
    import zarr
    from PIL import Image

    from histobatch.instance_metrics import aji, dice, panoptic_quality
    from histobatch.train.datasets import read_consep

    predictor = Predictor(load_model(tiny_model_dir), "cpu", "fp32")
    evaluate_dataset(consep_like, predictor, tmp_path / "eval", EvaluateSettings(), False)
    per_image = pd.read_csv(tmp_path / "eval" / "per_image.csv").set_index("image")
    for sample in read_consep(consep_like, "identity")[:2]:
        image = tmp_path / f"{sample.name}.png"
        Image.fromarray(sample.image).save(image)
        result = CliRunner().invoke(
            cli,
            [
                "segment",
                str(image),
                "--mpp",
                "0.25",
                "--model",
                str(tiny_model_dir),
                "-o",
                str(tmp_path / "seg"),
                "--device",
                "cpu",
                "--precision",
                "fp32",
                "--no-report",
            ],
        )
        assert result.exit_code == 0, result.output
        folder = tmp_path / "seg" / sample.name
        masks = np.asarray(zarr.open_group(str(folder / "masks.ome.zarr"))["instances"]["0"][:])
        table = pd.read_parquet(folder / "nuclei.parquet")
        row = per_image.loc[sample.name]
        assert row.predicted_nuclei == len(table)
        pq = panoptic_quality(sample.inst_map, masks)
        ours = [dice(sample.inst_map, masks), aji(sample.inst_map, masks), pq.pq]
        np.testing.assert_allclose(ours, [row.dice, row.aji, row.pq], equal_nan=True)
