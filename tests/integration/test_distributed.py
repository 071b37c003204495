"""Dask distributed: the tiles of one slide on several worker processes, same result as local."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from tests.conftest import make_disc_image, write_pyramidal_tiff
from tests.integration.test_robustness import _corrupt_level0_tile, _digest

pytest.importorskip("distributed", reason="the workflow extra is not installed")

FAST = ["--tile-size", "256", "--margin", "32", "--no-progress"]


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    image, _ = make_disc_image(1100, 900, 120, seed=41)
    return write_pyramidal_tiff(tmp_path_factory.mktemp("dask") / "big.tiff", image, mpp=0.25)


def _segment(slide, out, model, *extra):
    args = ["segment", str(slide), "-o", str(out), "--model", str(model), *FAST, *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out / slide.stem


def test_local_cluster_gives_the_same_nuclei_as_a_local_run(slide, tmp_path, tiny_model_dir):
    local = _segment(slide, tmp_path / "local", tiny_model_dir)
    spread = _segment(slide, tmp_path / "dask", tiny_model_dir, "--cluster", "local:2")
    assert _digest(spread) == _digest(local)  # same ids, same rows, same masks
    summary = json.loads((spread / "summary.json").read_text())
    assert summary["device"].startswith("dask (2 workers")
    assert summary["nucleus_count"] > 50


def test_existing_scheduler_and_a_worker_error(slide, tmp_path, tiny_model_dir):
    from distributed import LocalCluster

    bad = tmp_path / "bad.tiff"
    wide, _ = make_disc_image(4400, 700, 80, seed=5)
    write_pyramidal_tiff(bad, wide, mpp=0.25)
    _corrupt_level0_tile(bad)
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        args = ["segment", str(slide), str(bad), "-o", str(tmp_path / "out")]
        args += ["--model", str(tiny_model_dir), *FAST, "--scheduler", cluster.scheduler_address]
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert (tmp_path / "out" / "big" / "summary.json").is_file()
    lines = [line for line in result.output.splitlines() if str(bad) in line]
    assert lines and "cannot read pixels" in lines[-1] and "Traceback" not in result.output


def test_unknown_cluster_kind_is_one_line(slide, tmp_path, tiny_model_dir):
    args = ["segment", str(slide), "-o", str(tmp_path), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(cli, [*args, "--cluster", "kubernetes"])
    assert result.exit_code == 1 and "unknown --cluster 'kubernetes'" in result.output


def test_slurm_cluster_asks_one_gpu_per_worker_job():
    pytest.importorskip("dask_jobqueue")
    import dask

    from histobatch.distributed import slurm_cluster

    with dask.config.set({"jobqueue.slurm.cores": 8, "jobqueue.slurm.memory": "32GB"}):
        cluster = slurm_cluster(gpu=True)
        try:
            script = cluster.job_script()
        finally:
            cluster.close()
    assert "#SBATCH --gres=gpu:1" in script
    assert "--resources GPU=1" in script
