"""The command line: help, version, and bad inputs next to a good slide in one batch."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from tests.conftest import make_disc_image, real_data, write_pyramidal_tiff


def test_help_is_instant_and_lists_commands():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "histobatch", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "segment" in result.stdout and "train" in result.stdout
    assert "torch" not in result.stderr  # heavy imports happen inside commands


@pytest.mark.parametrize("command", ["segment", "train", "evaluate"])
def test_subcommand_help(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_version():
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and "histobatch" in result.output


@pytest.fixture()
def batch(tmp_path):
    """A good slide plus one file for every kind of bad input."""
    image, _ = make_disc_image(400, 300, 15, seed=2)
    good = write_pyramidal_tiff(tmp_path / "good.tiff", image, mpp=0.25)
    truncated = tmp_path / "truncated.tiff"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    text = tmp_path / "notes.svs"
    text.write_text("this is not a slide\n" * 20)
    empty = tmp_path / "empty.ndpi"
    empty.write_bytes(b"")
    nompp = write_pyramidal_tiff(tmp_path / "nompp.tiff", image, mpp=None)
    (tmp_path / "emptydir").mkdir()
    cases = {
        str(tmp_path / "missing.svs"): "file not found",
        str(truncated): "truncated",
        str(text): "unsupported format",
        str(empty): "empty file",
        str(nompp): "pass --mpp",
        str(tmp_path / "emptydir"): "no slide files",
        str(tmp_path / "nomatch*.svs"): "no files match",
    }
    return good, cases


def test_bad_inputs_do_not_stop_the_batch(batch, tmp_path, tiny_model_dir):
    good, cases = batch
    out = tmp_path / "out"
    args = [
        "segment",
        str(good),
        *cases,
        "-o",
        str(out),
        "--model",
        str(tiny_model_dir),
        "--tile-size",
        "256",
        "--margin",
        "32",
        "--no-progress",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.output.splitlines()
    for path, message in cases.items():
        matching = [line for line in lines if path in line and message in line]
        assert matching, f"no '{message}' line for {path}:\n{result.output}"
    assert (out / "good" / "summary.json").exists()
    assert (out / "good" / "nuclei.parquet").exists()
    failures = json.loads((out / "failures.json").read_text())
    assert len(failures) == len(cases)
    cohort = pd.read_csv(out / "cohort.csv")
    assert cohort.slide[cohort.status == "done"].tolist() == ["good"]
    assert (cohort.status == "failed").sum() == len(cases)
    assert f"{len(cases) + 1} slide(s): 1 done, 0 skipped, {len(cases)} failed" in result.output


def test_invalid_model_folder_is_one_line(tmp_path):
    image, _ = make_disc_image(300, 300, 5)
    good = write_pyramidal_tiff(tmp_path / "good.tiff", image, mpp=0.25)
    result = CliRunner().invoke(
        cli, ["segment", str(good), "-o", str(tmp_path / "o"), "--model", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert "not a histobatch model folder" in result.output and "Traceback" not in result.output


def test_rerun_skips_finished_slides(tmp_path, tiny_model_dir):
    image, _ = make_disc_image(300, 300, 8)
    good = write_pyramidal_tiff(tmp_path / "good.tiff", image, mpp=0.25)
    args = [
        "segment",
        str(good),
        "-o",
        str(tmp_path / "o"),
        "--model",
        str(tiny_model_dir),
        "--tile-size",
        "256",
        "--margin",
        "32",
    ]
    assert CliRunner().invoke(cli, args).exit_code == 0
    second = CliRunner().invoke(cli, args)
    assert second.exit_code == 0 and "1 skipped" in second.output


def test_real_cmu_slide_end_to_end(tmp_path, tiny_model_dir):
    slide = real_data("slides", "cmu-1-small-region.svs")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        ["segment", str(slide), "-o", str(out), "--model", str(tiny_model_dir), "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    folder = out / "cmu-1-small-region"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["mpp"] == pytest.approx(0.499) and summary["model_mpp"] == 0.25
    assert summary["dimensions"] == [2220, 2967]
    assert 0.3 < summary["tissue_area_mm2"] < 1.2
    for name in ("nuclei.parquet", "masks.ome.zarr", "overview.png"):
        assert (folder / name).exists()


def test_real_jpeg2000_slide_needs_mpp(tmp_path, tiny_model_dir):
    slide = real_data("slides", "tcga-cr-7395-01a-01-ts1.svs")
    local = tmp_path / "tcga.svs"
    shutil.copy(slide, local)
    base = [
        "segment",
        str(local),
        "-o",
        str(tmp_path / "out"),
        "--model",
        str(tiny_model_dir),
        "--no-progress",
    ]
    refused = CliRunner().invoke(cli, base)
    assert refused.exit_code == 1 and "pass --mpp" in refused.output
    # 0.125 µm/px: level 1 (downsample 2) is read pixel for pixel on the 0.25 µm/px model grid.
    accepted = CliRunner().invoke(cli, [*base, "--mpp", "0.125"])
    assert accepted.exit_code == 0, accepted.output
    summary = json.loads((tmp_path / "out" / "tcga" / "summary.json").read_text())
    assert summary["mpp_source"] == "--mpp" and summary["read_level"] == 1
    assert summary["tissue_area_mm2"] > 0.1
