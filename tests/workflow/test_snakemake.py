"""The Snakemake workflow: lint, dry runs (local and SLURM profile) and real runs.

A real run over two slides makes both slides' outputs and the cohort table; a second run does
nothing; adding a slide to the sample sheet runs only that slide (and the cohort step).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import DATA, make_disc_image, write_pyramidal_tiff

pytest.importorskip(
    "snakemake", reason="the workflow extra is not installed (pip install .[workflow])"
)

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
CMU = DATA / "slides" / "cmu-1-small-region.svs"


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run snakemake with this environment's executables first on PATH."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a snakemake run: ``{rule: jobs}``."""
    counts = {}
    block = output.split("Job stats:", 1)[1] if "Job stats:" in output else ""
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match.group(1)] = int(match.group(2))
    return counts


@pytest.fixture()
def workdir(tmp_path, tiny_model_dir) -> Path:
    """Three small synthetic slides and a sample sheet naming the first two."""
    slides = tmp_path / "slides"
    slides.mkdir()
    for seed in range(3):
        image, _ = make_disc_image(520, 420, 25, seed=30 + seed)
        write_pyramidal_tiff(slides / f"slide{seed}.tiff", image, mpp=0.25)
    (tmp_path / "model").symlink_to(tiny_model_dir)
    return tmp_path


def write_sheet(workdir: Path, rows: list[tuple[str, str, str]]) -> Path:
    sheet = workdir / "samples.tsv"
    lines = ["slide_id\tpath\tmpp"] + ["\t".join(row) for row in rows]
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


CONFIG = ["out=results", "model=model", "tile_size=512", "margin=32", "threads=1"]


def test_lint_is_clean(workdir):
    result = snakemake(workdir, "--lint", "--config", "slides=slides/*.tiff", *CONFIG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition" in result.stdout + result.stderr


def test_dry_run_with_the_default_config_and_a_glob(workdir):
    result = snakemake(workdir, "-n", "--cores", "1", "--config", "slides=slides/*.tiff")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert job_counts(output) == {"segment": 3, "aggregate": 1, "all": 1, "total": 5}


def test_invalid_config_is_refused_by_the_schema(workdir):
    result = snakemake(
        workdir, "-n", "--cores", "1", "--config", "slides=slides/*.tiff", "tile_size=100"
    )
    assert result.returncode != 0
    assert "tile_size" in result.stdout + result.stderr


def test_slurm_profile_dry_run(workdir):
    profile = REPO / "pipelines" / "profiles" / "slurm"
    result = snakemake(
        workdir, "-n", "--profile", str(profile), "--config", "slides=slides/*.tiff", *CONFIG
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert job_counts(output)["segment"] == 3


def test_real_run_rerun_and_one_added_slide(workdir):
    rows = [("slide0", "slides/slide0.tiff", ""), ("slide1", "slides/slide1.tiff", "")]
    if CMU.exists():  # a real slide too, when ../shared/data is there
        rows.append(("cmu", str(CMU), ""))
    sheet = write_sheet(workdir, rows)
    config = ["--config", f"slides={sheet}", *CONFIG]

    first = snakemake(workdir, "--cores", "2", *config)
    assert first.returncode == 0, first.stdout + first.stderr
    assert job_counts(first.stderr)["segment"] == len(rows)
    results = workdir / "results"
    for slide_id, _, _ in rows:
        for name in ("summary.json", "nuclei.parquet", "overview.png", "masks.ome.zarr"):
            assert (results / slide_id / name).exists(), (slide_id, name)
        assert (results / "logs" / "segment" / f"{slide_id}.log").is_file()
    cohort = pd.read_parquet(results / "cohort.parquet")
    assert sorted(cohort.slide) == sorted(r[0] for r in rows) and (cohort.status == "done").all()
    assert (cohort.nuclei > 0).all() and (results / "cohort.png").is_file()

    second = snakemake(workdir, "--cores", "2", *config)
    assert second.returncode == 0 and "Nothing to be done" in second.stdout + second.stderr

    write_sheet(workdir, [*rows, ("slide2", "slides/slide2.tiff", "0.25")])
    third = snakemake(workdir, "--cores", "2", *config)
    assert third.returncode == 0, third.stdout + third.stderr
    assert job_counts(third.stderr) == {"segment": 1, "aggregate": 1, "all": 1, "total": 3}
    assert "slide=slide2" in third.stderr.replace(" ", "")
    assert len(pd.read_csv(results / "cohort.csv")) == len(rows) + 1
