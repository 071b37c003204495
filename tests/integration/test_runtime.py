"""``segment --runtime onnx``: the same nuclei as torch, recorded in the run, refused clearly when
onnxruntime is missing or asked for what it cannot do."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from tests.conftest import make_disc_image, match_centroids, write_pyramidal_tiff

FAST = ["--tile-size", "256", "--margin", "32", "--no-progress", "--precision", "fp32"]


def _needs_onnx():
    pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install '.[onnx]'")
    pytest.importorskip("onnxscript", reason="needs the onnx extra: pip install '.[onnx]'")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Exports go to a folder of the test, not the user's cache."""
    monkeypatch.setenv("HISTOBATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    image, _ = make_disc_image(640, 480, 40, seed=7)
    return write_pyramidal_tiff(tmp_path_factory.mktemp("runtime") / "discs.tiff", image, 0.25)


def _segment(slide, out, model, *extra):
    args = ["segment", str(slide), "-o", str(out), "--model", str(model), *FAST, *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out / slide.stem


def test_onnx_runtime_finds_the_same_nuclei_as_torch(slide, tmp_path, tiny_model_dir, cache):
    _needs_onnx()
    torch_dir = _segment(slide, tmp_path / "torch", tiny_model_dir, "--runtime", "torch")
    onnx_dir = _segment(slide, tmp_path / "onnx", tiny_model_dir, "--runtime", "onnx")
    a = pd.read_parquet(torch_dir / "nuclei.parquet")
    b = pd.read_parquet(onnx_dir / "nuclei.parquet")
    assert len(a) > 10 and len(a) == len(b)
    assert len(match_centroids(a, b, tol=1.0)) == len(a)
    assert (a.type_id.to_numpy() == b.type_id.to_numpy()).mean() > 0.95
    summary = json.loads((onnx_dir / "summary.json").read_text())
    assert summary["runtime"] == "onnx" and summary["precision"] == "fp32"
    assert json.loads((torch_dir / "summary.json").read_text())["runtime"] == "torch"
    exported = list((cache / "onnx").glob("*.onnx"))
    assert len(exported) == 1  # exported once; a second run reuses it
    stamp = exported[0].stat().st_mtime_ns
    _segment(slide, tmp_path / "again", tiny_model_dir, "--runtime", "onnx")
    assert exported[0].stat().st_mtime_ns == stamp


def test_fingerprint_records_the_runtime(tiny_model_dir):
    _needs_onnx()
    from histobatch.model import load_model
    from histobatch.pipeline import SegmentSettings, run_fingerprint
    from histobatch.runtime import make_predictor

    model = load_model(tiny_model_dir)
    settings = SegmentSettings(tile_size=256, margin=32)
    torch_print = run_fingerprint(make_predictor(model, "cpu", "fp32", "torch"), settings)
    onnx_print = run_fingerprint(make_predictor(model, "cpu", "fp32", "onnx", 1), settings)
    assert torch_print["runtime"] == "torch" and onnx_print["runtime"] == "onnx"
    assert {k for k in torch_print if torch_print[k] != onnx_print[k]} == {"runtime"}


def test_onnx_runtime_reaches_dask_workers(slide, tmp_path, tiny_model_dir):
    _needs_onnx()
    pytest.importorskip("distributed", reason="the workflow extra is not installed")
    spread = _segment(
        slide, tmp_path / "dask", tiny_model_dir, "--runtime", "onnx", "--cluster", "local:1"
    )
    summary = json.loads((spread / "summary.json").read_text())
    assert summary["runtime"] == "onnx" and summary["device"].startswith("dask (1 workers, cpu")
    assert summary["nucleus_count"] > 10


def test_worker_builds_an_onnx_predictor(tiny_model_dir):
    _needs_onnx()
    from histobatch.distributed import WorkerJob, _worker_predictor
    from histobatch.onnx_predictor import OnnxPredictor
    from histobatch.pipeline import SegmentSettings

    job = WorkerJob(str(tiny_model_dir), "cpu", "auto", SegmentSettings(), 1, "onnx")
    assert isinstance(_worker_predictor(job), OnnxPredictor)


def test_missing_onnxruntime_is_one_line(slide, tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    out = tmp_path / "out"
    args = ["segment", str(slide), "-o", str(out), "--model", str(tiny_model_dir), "--runtime"]
    result = CliRunner().invoke(cli, [*args, "onnx"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'histobatch[onnx]'" in lines[0], result.output
    assert not out.exists()  # stopped before anything was written


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--device", "cuda"], "runs on the CPU"), (["--precision", "bf16"], "computes in fp32")],
)
def test_onnx_runtime_refuses_gpu_and_reduced_precision(slide, tmp_path, extra, message):
    _needs_onnx()
    args = ["segment", str(slide), "-o", str(tmp_path / "o"), "--runtime", "onnx", *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and message in result.output
    assert "Traceback" not in result.output
