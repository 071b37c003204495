"""Unattended batches: every bad input gives one clear line, nothing else is lost.

Covers bad slides next to a good one (table-driven), run-wide bad options, a full disk, SIGKILL in
the middle of a slide, two runs sharing one output folder, and run-to-run determinism.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import zarr
from click.testing import CliRunner
from PIL import Image

from histobatch.cli.main import cli
from tests.conftest import make_disc_image, write_pyramidal_tiff

FAST = ["--tile-size", "128", "--margin", "32", "--no-progress"]


def _corrupt_level0_tile(path: Path) -> None:
    """Zero one compressed level-0 tile in the middle of the slide (lower levels stay intact)."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offsets, counts = page.dataoffsets, page.databytecounts
    index = len(offsets) // 2
    data = bytearray(path.read_bytes())
    data[offsets[index] : offsets[index] + counts[index]] = bytes(counts[index])
    path.write_bytes(bytes(data))


def _make_bad_inputs(folder: Path, good_image: np.ndarray, good: Path) -> dict[str, tuple]:
    """``{input: (expected outcome, words the one-line message must contain)}``."""
    truncated = folder / "truncated.tiff"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    (folder / "notes.svs").write_text("this is not a slide\n" * 20)
    rng = np.random.default_rng(0)
    (folder / "random.svs").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (folder / "empty.ndpi").write_bytes(b"")
    Image.fromarray(good_image).save(folder / "renamed.ndpi", format="PNG")
    write_pyramidal_tiff(folder / "nompp.tiff", good_image, mpp=None)
    write_pyramidal_tiff(folder / "absurd.tiff", good_image, mpp=400.0)
    (folder / "emptydir").mkdir()
    (folder / "emptydir" / "readme.txt").write_text("no slides here")
    # Wide enough that the thumbnail comes from level 1: the bad tile is met while reading tiles.
    wide, _ = make_disc_image(4400, 700, 80, seed=5)
    midway = write_pyramidal_tiff(folder / "midway.tiff", wide, mpp=0.25)
    _corrupt_level0_tile(midway)
    write_pyramidal_tiff(folder / "blank.tiff", np.full((300, 400, 3), 242, np.uint8), mpp=0.25)
    tiny, _ = make_disc_image(40, 30, 0)
    write_pyramidal_tiff(folder / "tiny.tiff", tiny, mpp=0.25, levels=1, tile=16)
    return {
        str(folder / "missing.svs"): ("failed", "file not found"),
        str(truncated): ("failed", "truncated"),
        str(folder / "notes.svs"): ("failed", "unsupported format"),
        str(folder / "random.svs"): ("failed", "unsupported format"),
        str(folder / "empty.ndpi"): ("failed", "empty file"),
        str(folder / "renamed.ndpi"): ("failed", "pass --mpp"),
        str(folder / "nompp.tiff"): ("failed", "pass --mpp"),
        str(folder / "absurd.tiff"): ("failed", "is not a scan resolution"),
        str(folder / "emptydir"): ("failed", "no slide files"),
        str(folder / "nomatch*.svs"): ("failed", "no files match"),
        str(midway): ("failed", "cannot read pixels"),
        str(folder / "blank.tiff"): ("done", "0 nuclei"),
        str(folder / "tiny.tiff"): ("done", None),
    }


@pytest.fixture(scope="module")
def bad_batch(tmp_path_factory, tiny_model_dir):
    """One CLI run over a good slide and every kind of bad input."""
    folder = tmp_path_factory.mktemp("batch")
    image, _ = make_disc_image(400, 300, 15, seed=2)
    good = write_pyramidal_tiff(folder / "good.tiff", image, mpp=0.25)
    cases = _make_bad_inputs(folder, image, good)
    out = folder / "out"
    args = ["segment", str(good), *cases, "-o", str(out), "--model", str(tiny_model_dir), *FAST]
    result = CliRunner().invoke(cli, args)
    return result, out, cases


BAD_INPUT_NAMES = [
    "missing.svs",
    "truncated.tiff",
    "notes.svs",
    "random.svs",
    "empty.ndpi",
    "renamed.ndpi",
    "nompp.tiff",
    "absurd.tiff",
    "emptydir",
    "nomatch*.svs",
    "midway.tiff",
    "blank.tiff",
    "tiny.tiff",
]


@pytest.mark.parametrize("name", BAD_INPUT_NAMES)
def test_each_bad_input_gets_its_line_and_the_batch_goes_on(bad_batch, name):
    result, out, cases = bad_batch
    (path, (outcome, words)) = next((p, c) for p, c in cases.items() if p.endswith(name))
    assert result.exit_code == 1, result.output  # some inputs failed
    assert "Traceback" not in result.output
    assert (out / "good" / "summary.json").is_file()  # the good slide was not lost
    failures = {f["slide"]: f["error"] for f in json.loads((out / "failures.json").read_text())}
    if outcome == "failed":
        assert path in failures, failures
        message = failures[path]
        assert words in message and message.startswith(path) and "\n" not in message
        assert any(path in line and words in line for line in result.output.splitlines())
        assert not (out / Path(path).stem / "summary.json").exists()
    else:
        assert path not in failures
        summary = json.loads((out / Path(path).stem / "summary.json").read_text())
        if words == "0 nuclei":  # no tissue: a valid, empty result
            assert summary["nucleus_count"] == 0 and summary["tissue_area_mm2"] == 0


def test_batch_summary_counts_every_input(bad_batch):
    result, out, cases = bad_batch
    failed = sum(outcome == "failed" for outcome, _ in cases.values())
    done = len(cases) - failed + 1
    assert f"{len(cases) + 1} slide(s): {done} done, 0 skipped, {failed} failed" in result.output
    cohort = pd.read_csv(out / "cohort.csv")
    assert sorted(cohort.slide[cohort.status == "done"]) == ["blank", "good", "tiny"]
    assert (cohort.status == "failed").sum() == failed  # failures are listed with their reason
    assert cohort.error[cohort.status == "failed"].notna().all()


@pytest.fixture()
def good_slide(tmp_path) -> Path:
    image, _ = make_disc_image(300, 260, 10, seed=3)
    return write_pyramidal_tiff(tmp_path / "good.tiff", image, mpp=0.25)


def _mismatched_model(folder: Path, tiny_model_dir: Path) -> Path:
    """A model folder whose config.json names another encoder than its weights."""
    folder.mkdir()
    config = json.loads((tiny_model_dir / "config.json").read_text())
    config["encoder"] = "resnet34"
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((tiny_model_dir / "model.safetensors").read_bytes())
    return folder


def _garbage_weights(folder: Path, tiny_model_dir: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (folder / "model.safetensors").write_bytes(b"\x00" * 100)
    return folder


RUN_WIDE_ERRORS = {
    "mpp zero": (["--mpp", "0"], "--mpp 0 is outside the plausible range"),
    "mpp absurd": (["--mpp", "5000"], "--mpp 5000 is outside the plausible range"),
    "tile size": (["--tile-size", "100", "--margin", "16"], "--tile-size must be a multiple of 32"),
    "margin too big": (["--tile-size", "128", "--margin", "60"], "leaves no core"),
    "batch size": (["--batch-size", "0"], "--batch-size must be at least 1"),
    "readers": (["--readers", "0"], "must be at least 1"),
    "max memory": (["--max-memory", "-2"], "--max-memory must be positive"),
    "device": (["--device", "tpu"], "unknown device 'tpu'"),
    "missing model": (["--model", "{tmp}/nowhere"], "model folder not found"),
    "not a model": (["--model", "{tmp}"], "not a histobatch model folder"),
    "mismatched model": (["--model", "{mismatched}"], "weights do not match config.json"),
    "corrupt weights": (["--model", "{garbage}"], "cannot read model.safetensors"),
    "output not writable": (["-o", "{tmp}/good.tiff/out"], "output folder is not writable"),
}


@pytest.mark.parametrize("case", list(RUN_WIDE_ERRORS))
def test_run_wide_bad_options_stop_with_one_line(case, good_slide, tmp_path, tiny_model_dir):
    options, words = RUN_WIDE_ERRORS[case]
    names = {
        "tmp": str(tmp_path),
        "mismatched": str(_mismatched_model(tmp_path / "mismatched", tiny_model_dir)),
        "garbage": str(_garbage_weights(tmp_path / "garbage", tiny_model_dir)),
    }
    options = [option.format(**names) for option in options]
    base = ["segment", str(good_slide), "-o", str(tmp_path / "out"), "--no-progress"]
    if "--model" not in options:
        base += ["--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, [*base, *options])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if "rror" in line]
    assert len(error_lines) == 1 and words in error_lines[0], result.output
    assert not (tmp_path / "out" / "good" / "summary.json").exists()


def test_full_disk_is_one_line_and_nothing_looks_finished(
    good_slide, tmp_path, tiny_model_dir, monkeypatch
):
    from histobatch import stitch
    from histobatch.pipeline import SegmentSettings
    from histobatch.runner import segment_slides

    def disk_full(file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(file))

    settings = SegmentSettings(tile_size=128, margin=32, progress=False)
    out = tmp_path / "out"
    monkeypatch.setattr(stitch.np, "savez_compressed", disk_full)
    results = segment_slides([str(good_slide)], out, str(tiny_model_dir), settings=settings)
    assert results[0].status == "failed"
    assert "no space left on the device holding" in results[0].error
    assert str(good_slide) in results[0].error and "\n" not in results[0].error
    assert not (out / "good").exists()
    assert not list(out.glob("**/summary.json"))
    monkeypatch.undo()  # space freed: the rerun completes
    again = segment_slides([str(good_slide)], out, str(tiny_model_dir), settings=settings)
    assert again[0].status == "done" and (out / "good" / "summary.json").is_file()


def _digest(folder: Path) -> dict[str, str]:
    """Content hashes of a slide's table and of every mask level."""
    table = pd.read_parquet(folder / "nuclei.parquet")
    digests = {"table": hashlib.sha256(table.to_csv(index=False).encode()).hexdigest()}
    root = zarr.open_group(str(folder / "masks.ome.zarr"), mode="r")
    for name in ("instances", "classes"):
        group = root["labels"][name] if "labels" in root else root[name]
        for level in sorted(group.array_keys()):
            digests[f"{name}/{level}"] = hashlib.sha256(
                np.asarray(group[level]).tobytes()
            ).hexdigest()
    return digests


def _segment_cli(slides, out, model, *extra) -> subprocess.Popen:
    command = [sys.executable, "-m", "histobatch", "segment", *map(str, slides), "-o", str(out)]
    command += ["--model", str(model), *FAST, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )


@pytest.fixture(scope="module")
def many_tile_slide(tmp_path_factory) -> Path:
    """A slide of a few hundred 64-px cores, so that a run can be caught in the middle."""
    image, _ = make_disc_image(1400, 1100, 220, seed=7)
    return write_pyramidal_tiff(tmp_path_factory.mktemp("kill") / "many.tiff", image, mpp=0.25)


def test_sigkill_mid_slide_then_rerun_equals_an_uninterrupted_run(
    many_tile_slide, tmp_path, tiny_model_dir
):
    reference = _segment_cli(
        [many_tile_slide], tmp_path / "ref", tiny_model_dir, "--batch-size", "1"
    )
    assert reference.wait(timeout=300) == 0, reference.stdout.read()

    out = tmp_path / "killed"
    run = _segment_cli([many_tile_slide], out, tiny_model_dir, "--batch-size", "1")
    tiles = out / ".many.partial" / "tiles"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(tiles.glob("r*_c*.npz"))) < 15:
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=30)
    # Finished tiles only: a tile being written when the kill came is a hidden .tmp.npz file.
    finished_before = len(list(tiles.glob("r*_c*.npz")))
    assert finished_before >= 15, "the run ended before it could be killed"
    assert not (out / "many").exists()  # nothing that a rerun would take as finished

    rerun = _segment_cli([many_tile_slide], out, tiny_model_dir, "--batch-size", "3")
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert "resuming" in output and f"{finished_before} of" in output.replace(",", "")
    assert _digest(out / "many") == _digest(tmp_path / "ref" / "many")
    assert pd.read_parquet(out / "many" / "nuclei.parquet").id.is_unique
    assert not (out / ".many.partial").exists()


def test_two_runs_on_one_output_folder(tmp_path, tiny_model_dir):
    slides = []
    for seed in range(3):
        image, _ = make_disc_image(700, 600, 40, seed=20 + seed)
        slides.append(write_pyramidal_tiff(tmp_path / f"s{seed}.tiff", image, mpp=0.25))
    reference = _segment_cli(slides, tmp_path / "ref", tiny_model_dir)
    assert reference.wait(timeout=300) == 0

    out = tmp_path / "shared"
    first = _segment_cli(slides, out, tiny_model_dir)
    second = _segment_cli(slides[::-1], out, tiny_model_dir)
    outputs = [run.communicate(timeout=300)[0] for run in (first, second)]
    assert [first.returncode, second.returncode] == [0, 0], outputs
    done = sum(int(o.split(" done")[0].rsplit(" ", 1)[-1]) for o in outputs)
    assert done == 3, outputs  # each slide segmented by exactly one of the runs
    for slide in slides:
        assert _digest(out / slide.stem) == _digest(tmp_path / "ref" / slide.stem)
    cohort = pd.read_csv(out / "cohort.csv")
    assert sorted(cohort.slide) == ["s0", "s1", "s2"] and (cohort.status == "done").all()
    assert not list(out.glob(".*.partial")) and not list(out.glob(".*.tmp"))


def test_same_outputs_whatever_the_workers_and_batch(good_slide, tmp_path, tiny_model_dir):
    digests = []
    for extra in (
        ["--readers", "1", "--post-workers", "1", "--batch-size", "1"],
        ["--readers", "3", "--post-workers", "2", "--batch-size", "4"],
        ["--readers", "3", "--post-workers", "2", "--batch-size", "4"],
    ):
        out = tmp_path / f"out{len(digests)}"
        result = CliRunner().invoke(
            cli,
            [
                "segment",
                str(good_slide),
                "-o",
                str(out),
                "--model",
                str(tiny_model_dir),
                *FAST,
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
        digests.append(_digest(out / "good"))
    assert digests[0] == digests[1] == digests[2]


def test_max_memory_backpressure_still_finishes(good_slide, tmp_path, tiny_model_dir):
    out = tmp_path / "out"
    reference = tmp_path / "ref"
    base = ["segment", str(good_slide), "--model", str(tiny_model_dir), *FAST]
    assert CliRunner().invoke(cli, [*base, "-o", str(reference)]).exit_code == 0
    result = CliRunner().invoke(cli, [*base, "-o", str(out), "--max-memory", "0.01"])
    assert result.exit_code == 0, result.output
    assert "above --max-memory" in result.output
    assert _digest(out / "good") == _digest(reference / "good")


def test_failures_stay_listed_until_their_slide_is_retried(tmp_path, tiny_model_dir):
    good_image, _ = make_disc_image(300, 260, 10, seed=4)
    first = write_pyramidal_tiff(tmp_path / "first.tiff", good_image, mpp=None)
    second = write_pyramidal_tiff(tmp_path / "second.tiff", good_image, mpp=None)
    out = tmp_path / "out"
    base = ["segment", "-o", str(out), "--model", str(tiny_model_dir), *FAST]
    CliRunner().invoke(cli, [*base, str(first), str(second)])  # both fail: no µm/px
    assert len(json.loads((out / "failures.json").read_text())) == 2
    retried = CliRunner().invoke(cli, [*base, str(first), "--mpp", "0.25"])
    assert retried.exit_code == 0, retried.output
    failures = json.loads((out / "failures.json").read_text())
    assert [f["slide"] for f in failures] == [str(second)]  # the other failure is still listed
    cohort = pd.read_csv(out / "cohort.csv").set_index("slide")
    assert cohort.loc["first", "status"] == "done" and cohort.loc["second", "status"] == "failed"
