"""``histobatch export anndata|spatialdata``: the nuclei for scanpy/squidpy and SpatialData, in
micrometres, read back with anndata.read_h5ad and spatialdata.read_zarr."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from histobatch.model import CONSEP4_CLASSES, CONSEP4_COLORS
from tests.conftest import make_disc_image, oracle_model, write_pyramidal_tiff

EXTRA = "needs the scverse extra: pip install '.[scverse]'"


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished slide folder (oracle model: the drawn discs) of a slide at 0.125 µm/px, so the
    model grid (0.25 µm/px) is not the slide's level 0."""
    from histobatch.inference import Predictor
    from histobatch.pipeline import SegmentSettings, segment_slide

    root = tmp_path_factory.mktemp("scverse")
    image, _ = make_disc_image(900, 700, 60, seed=12, radius=(8, 14))
    slide = write_pyramidal_tiff(root / "discs.tiff", image, mpp=0.125)
    settings = SegmentSettings(tile_size=256, margin=32, progress=False, report=False)
    result = segment_slide(slide, root / "out", Predictor(oracle_model(), "cpu", "fp32"), settings)
    return result.out_dir


def _export(kind: str, folder: Path) -> None:
    result = CliRunner().invoke(cli, ["export", kind, str(folder)])
    assert result.exit_code == 0, result.output


def test_anndata_export(finished):
    anndata = pytest.importorskip("anndata", reason=EXTRA)
    _export("anndata", finished)
    table = pd.read_parquet(finished / "nuclei.parquet")
    adata = anndata.read_h5ad(finished / "nuclei.h5ad")
    assert adata.n_obs == len(table) > 10 and adata.n_vars == 0
    assert list(adata.obs.columns) == list(table.columns)
    assert list(adata.obs_names) == [str(i) for i in table.id]
    np.testing.assert_allclose(adata.obsm["spatial"], table[["x_um", "y_um"]].to_numpy())
    np.testing.assert_allclose(adata.obs.x_um, table.x * 0.125)  # µm, not pixels
    assert list(adata.obs["type"].cat.categories) == CONSEP4_CLASSES[1:]
    assert list(adata.obs["type"].astype(str)) == list(table["type"].astype(str))
    colors = ["#{:02x}{:02x}{:02x}".format(*rgb) for rgb in CONSEP4_COLORS[1:]]
    assert list(adata.uns["type_colors"]) == colors
    info = adata.uns["histobatch"]
    assert info["mpp"] == 0.125 and info["model_mpp"] == 0.25 and info["model"]["name"] == "oracle"
    assert info["nucleus_count"] == len(table) and info["spatial_unit"] == "micrometer"
    assert json.loads(info["summary_json"])["slide_id"] == "discs"


def test_spatialdata_export(finished):
    pytest.importorskip("anndata", reason=EXTRA)
    spatialdata = pytest.importorskip("spatialdata", reason=EXTRA)
    import zarr
    from shapely.geometry import Point
    from spatialdata.transformations import get_transformation

    _export("spatialdata", finished)
    table = pd.read_parquet(finished / "nuclei.parquet").set_index("id")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata = spatialdata.read_zarr(finished / "nuclei.spatialdata.zarr")
    masks = zarr.open_group(str(finished / "masks.ome.zarr"), mode="r")
    for name in ("instances", "classes"):
        level0 = sdata.labels[name]["scale0"]["image"]
        assert level0.shape == masks[name]["0"].shape
        assert len(sdata.labels[name]) == len(masks[name].attrs["multiscales"][0]["datasets"])
    instances = np.asarray(sdata.labels["instances"]["scale0"]["image"])
    np.testing.assert_array_equal(instances, masks["instances"]["0"][:])
    # Label pixels (centres at index + 0.5) map onto the table's micrometres.
    affine = get_transformation(sdata.labels["instances"], "global").to_affine_matrix(
        input_axes=("x", "y"), output_axes=("x", "y")
    )
    np.testing.assert_allclose(np.diag(affine)[:2], [0.25, 0.25])  # model µm/px
    for nucleus in table.index[:10]:
        ys, xs = np.nonzero(instances == nucleus)
        x_um, y_um, _ = affine @ [xs.mean() + 0.5, ys.mean() + 0.5, 1.0]
        assert (x_um, y_um) == pytest.approx(tuple(table.loc[nucleus, ["x_um", "y_um"]]), abs=1e-6)
    shapes = sdata.shapes["nuclei"]
    assert sorted(shapes.index) == sorted(table.index)
    for nucleus, polygon in shapes.geometry.items():
        assert polygon.contains(Point(table.loc[nucleus, "x_um"], table.loc[nucleus, "y_um"]))
    adata = sdata.tables["table"]
    attrs = adata.uns["spatialdata_attrs"]
    assert attrs["region"] == "instances" and attrs["instance_key"] == "instance_id"
    assert adata.n_obs == len(table)
    assert set(adata.obs["instance_id"]) == set(table.index)
    np.testing.assert_allclose(adata.obsm["spatial"], table[["x_um", "y_um"]].to_numpy())


def test_missing_extra_is_one_line(finished, monkeypatch):
    monkeypatch.setitem(sys.modules, "anndata", None)  # import fails as if not installed
    for kind in ("anndata", "spatialdata"):
        result = CliRunner().invoke(cli, ["export", kind, str(finished)])
        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "pip install 'histobatch[scverse]'" in lines[0], result.output


def test_unfinished_folder_is_one_line(tmp_path):
    pytest.importorskip("anndata", reason=EXTRA)
    result = CliRunner().invoke(cli, ["export", "anndata", str(tmp_path)])
    assert result.exit_code == 1 and "not a finished slide folder" in result.output


def test_blank_slide_exports_empty_tables(tmp_path):
    anndata = pytest.importorskip("anndata", reason=EXTRA)
    spatialdata = pytest.importorskip("spatialdata", reason=EXTRA)
    from histobatch.inference import Predictor
    from histobatch.pipeline import SegmentSettings, segment_slide

    image = np.empty((300, 400, 3), np.uint8)
    image[:] = (230, 180, 205)  # tissue, no nuclei
    slide = write_pyramidal_tiff(tmp_path / "blank.tiff", image, mpp=0.25)
    settings = SegmentSettings(
        tile_size=256, margin=32, progress=False, report=False, all_tiles=True
    )
    result = segment_slide(
        slide, tmp_path / "out", Predictor(oracle_model(), "cpu", "fp32"), settings
    )
    _export("anndata", result.out_dir)
    _export("spatialdata", result.out_dir)
    assert anndata.read_h5ad(result.out_dir / "nuclei.h5ad").n_obs == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdata = spatialdata.read_zarr(result.out_dir / "nuclei.spatialdata.zarr")
    assert sdata.tables["table"].n_obs == 0 and "instances" in sdata.labels
