"""Interoperability: slide info, QuPath GeoJSON, HoVer-Net JSON and the OME-Zarr label metadata."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from histobatch.model import CONSEP4_CLASSES, CONSEP4_COLORS
from tests.conftest import DATA, make_disc_image, oracle_model, write_pyramidal_tiff


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished slide folder (oracle model: the drawn discs) of a slide at 0.125 µm/px."""
    from histobatch.inference import Predictor
    from histobatch.pipeline import SegmentSettings, segment_slide

    root = tmp_path_factory.mktemp("interop")
    image, _ = make_disc_image(900, 700, 60, seed=12, radius=(8, 14))
    slide = write_pyramidal_tiff(root / "discs.tiff", image, mpp=0.125)
    settings = SegmentSettings(tile_size=256, margin=32, geojson=True, progress=False)
    result = segment_slide(slide, root / "out", Predictor(oracle_model(), "cpu", "fp32"), settings)
    return result.out_dir


def test_geojson_has_one_valid_detection_per_table_row(finished):
    from shapely.geometry import Point, shape

    table = pd.read_parquet(finished / "nuclei.parquet").set_index("id")
    collection = json.loads((finished / "nuclei.geojson").read_text())
    features = collection["features"]
    assert collection["type"] == "FeatureCollection" and len(features) == len(table) > 10
    names = dict(zip(CONSEP4_CLASSES, CONSEP4_COLORS, strict=True))
    areas = []
    for feature in features:
        properties = feature["properties"]
        row = table.loc[properties["nucleus_id"]]
        polygon = shape(feature["geometry"])
        assert polygon.is_valid and feature["geometry"]["type"] == "Polygon"
        assert properties["objectType"] == "detection"
        assert properties["classification"]["name"] == row["type"]
        assert properties["classification"]["color"] == names[row["type"]]
        assert properties["measurements"]["type_prob"] == pytest.approx(row.type_prob, abs=1e-3)
        assert polygon.contains(Point(row.x, row.y))  # level-0 pixels, like the table
        areas.append(polygon.area * 0.125**2 / row.area_um2)
    # The outline runs through pixel edges' midpoints: a little less than the pixel count.
    assert 0.85 < np.median(areas) < 1.0


def test_hovernet_json_layout(finished):
    from histobatch.writers.geojson import write_hovernet_json

    table = pd.read_parquet(finished / "nuclei.parquet").set_index("id")
    out = finished.parent / "discs.hovernet.json.gz"
    count = write_hovernet_json(
        finished / "masks.ome.zarr", finished / "nuclei.parquet", 0.125 / 0.25, out
    )
    data = json.loads(gzip.open(out, "rt").read())
    assert count == len(table) and set(data) == {"mag", "nuc"}
    for key, record in data["nuc"].items():
        row = table.loc[int(key)]
        (row_min, col_min), (row_max, col_max) = record["bbox"]
        assert row_min <= row.y <= row_max and col_min <= row.x <= col_max
        assert record["centroid"] == pytest.approx([row.x, row.y], abs=0.01)
        assert record["type"] == row.type_id and len(record["contour"]) >= 4


def test_export_cli_and_a_folder_that_is_not_finished(finished, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        cli, ["export", "geojson", str(finished), "-o", str(tmp_path / "a.geojson")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "a.geojson").read_text())["features"]
    bad = runner.invoke(cli, ["export", "hovernet", str(tmp_path)])
    assert bad.exit_code == 1 and "not a finished slide folder" in bad.output


def _grid_of_nuclei(folder: Path, side: int, pitch: int = 16, chunk: int = 448) -> int:
    """A slide folder's masks and table with small discs on a regular grid; returns the count."""
    from histobatch.writers.ome_zarr import LabelPyramidWriter
    from histobatch.writers.table import NucleusTableWriter

    folder.mkdir()
    centres = np.arange(pitch // 2, side - 4, pitch)
    yy, xx = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
    ids = np.arange(1, len(yy) + 1)
    disc = (np.mgrid[-5:6, -5:6] ** 2).sum(0) <= 25
    instances = np.zeros((side, side), np.uint32)
    for dy, dx in zip(*np.nonzero(disc), strict=True):
        instances[yy + dy - 5, xx + dx - 5] = ids
    classes = np.where(instances > 0, 1 + instances % 4, 0).astype(np.uint8)
    writer = LabelPyramidWriter(
        folder / "masks.ome.zarr", (side, side), chunk, 0.5, CONSEP4_CLASSES, CONSEP4_COLORS
    )
    for y in range(0, side, chunk):
        for x in range(0, side, chunk):
            block = (slice(y, y + chunk), slice(x, x + chunk))
            writer.write_chunk(y, x, instances[block], classes[block])
    writer.build_pyramid()
    n = len(ids)
    table = NucleusTableWriter(folder / "nuclei.parquet", CONSEP4_CLASSES)
    table.write(
        {
            "id": ids,
            "x": xx.astype(float),
            "y": yy.astype(float),
            "x_um": xx * 0.5,
            "y_um": yy * 0.5,
            "area_um2": np.full(n, disc.sum() * 0.25),
            "perimeter_um": np.full(n, 17.0),
            "eccentricity": np.zeros(n),
            "solidity": np.ones(n),
            "type_id": 1 + ids % 4,
            "type_prob": np.full(n, 0.9),
        }
    )
    table.close()
    return n


def test_geojson_streams_with_flat_memory(tmp_path):
    """4x the nuclei: the file grows 4x, the writer's peak memory far less."""
    from histobatch.writers.geojson import write_geojson

    folders = {}
    for side in (672, 1344):  # 3x3 and 6x6 chunks of 224 px: both have interior chunks
        folder = tmp_path / f"s{side}"
        folders[side] = (folder, _grid_of_nuclei(folder, side, chunk=224))
    small = folders[672][0]
    write_geojson(small / "masks.ome.zarr", small / "nuclei.parquet", 1.0, tmp_path / "warm.json")
    peaks, sizes = [], []
    for folder, n in folders.values():
        out = folder / "nuclei.geojson"
        tracemalloc.start()
        count = write_geojson(folder / "masks.ome.zarr", folder / "nuclei.parquet", 1.0, out)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == n
        sizes.append(out.stat().st_size)
    assert sizes[1] / sizes[0] > 3.8
    assert peaks[1] / peaks[0] < 1.15, f"peaks {peaks}, files {sizes}"


def test_ome_zarr_labels_validate_with_colours_and_names(finished):
    import zarr
    from ome_zarr_models.v04 import ImageLabel, Labels

    root = zarr.open_group(str(finished / "masks.ome.zarr"), mode="r")
    labels = Labels.from_zarr(root)
    assert labels.attributes.labels == ["instances", "classes"]
    classes = ImageLabel.from_zarr(root["classes"])
    meta = classes.attributes.image_label
    assert {c.label_value for c in meta.colors} == {1, 2, 3, 4}
    assert {
        p["label-value"]: p["class"] for p in root["classes"].attrs["image-label"]["properties"]
    } == {i: name for i, name in enumerate(CONSEP4_CLASSES) if i}
    instances = ImageLabel.from_zarr(root["instances"])
    datasets = instances.attributes.multiscales[0].datasets
    assert datasets[0].coordinateTransformations[0].scale == [0.25, 0.25]


def test_ome_zarr_reader_finds_both_labels(finished):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    nodes = list(Reader(parse_url(str(finished / "masks.ome.zarr")))())
    found = {node.metadata.get("name") for node in nodes}
    assert {"instances", "classes"} <= found


def test_info_on_every_real_slide():
    slides = sorted((DATA / "slides").glob("*")) if (DATA / "slides").exists() else []
    if not slides:
        pytest.skip(f"real data not available: {DATA / 'slides'}")
    result = CliRunner().invoke(cli, ["info", "--json", *map(str, slides)])
    assert result.exit_code == 0, result.output
    described = {Path(d["path"]).name: d for d in map(json.loads, result.output.splitlines())}
    assert set(described) == {p.name for p in slides}
    cmu = described["cmu-1-small-region.svs"]
    assert cmu["format"] == "aperio" and cmu["dimensions"] == [2220, 2967]
    assert cmu["mpp"] == pytest.approx(0.499) and cmu["objective_power"] == 20
    assert set(cmu["associated_images"]) == {"label", "macro", "thumbnail"}
    assert described["tcga-cr-7395-01a-01-ts1.svs"]["mpp"] is None
    text = CliRunner().invoke(cli, ["info", str(slides[0])]).output
    assert "levels" in text and "µm/px" in text


def test_info_on_a_bad_file_is_one_line(tmp_path):
    bad = tmp_path / "x.svs"
    bad.write_text("not a slide")
    result = CliRunner().invoke(cli, ["info", str(bad)])
    assert result.exit_code == 1 and "unsupported format" in result.output
