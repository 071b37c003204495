"""End-to-end pipeline on synthetic slides with the oracle model: tiling invariance and the
output contract (table ids = mask ids, summary = table, OME-Zarr readable with its metadata)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import zarr

from histobatch.inference import Predictor
from histobatch.pipeline import (
    FINGERPRINT_NAME,
    TISSUE_PAD_UM,
    SegmentSettings,
    run_fingerprint,
    segment_slide,
)
from histobatch.stats import write_json_atomic
from tests.conftest import make_disc_image, match_centroids, oracle_model, write_pyramidal_tiff


@pytest.fixture(scope="module")
def predictor():
    return Predictor(oracle_model(), "cpu", "fp32")


def _segment(slide, out, predictor, tile_size, margin, **kwargs):
    settings = SegmentSettings(
        tile_size=tile_size, margin=margin, batch_size=2, progress=False, **kwargs
    )
    return segment_slide(slide, out, predictor, settings)


def test_same_nuclei_whatever_the_tile_size(disc_slide, tmp_path, predictor):
    slide, discs = disc_slide
    small = _segment(slide, tmp_path / "small", predictor, 256, 32)
    large = _segment(slide, tmp_path / "large", predictor, 512, 64)
    a = pd.read_parquet(small.out_dir / "nuclei.parquet")
    b = pd.read_parquet(large.out_dir / "nuclei.parquet")
    assert len(a) == pytest.approx(len(discs), abs=2)
    pairs = match_centroids(a, b)
    assert len(pairs) >= 0.99 * max(len(a), len(b))
    for i, j in pairs:
        assert a.type_id.iloc[i] == b.type_id.iloc[j]
        assert a.area_um2.iloc[i] == pytest.approx(b.area_um2.iloc[j])


def test_nuclei_match_the_drawn_discs(disc_slide, tmp_path, predictor):
    slide, discs = disc_slide
    result = _segment(slide, tmp_path, predictor, 256, 32)
    table = pd.read_parquet(result.out_dir / "nuclei.parquet")
    truth = pd.DataFrame(discs, columns=["x", "y", "r", "type_id"])
    pairs = match_centroids(truth, table, tol=1.0)
    assert len(pairs) == len(truth)
    for i, j in pairs:
        assert table.type_id.iloc[j] == truth.type_id.iloc[i]
        area = np.pi * truth.r.iloc[i] ** 2 * 0.25**2
        assert table.area_um2.iloc[j] == pytest.approx(area, rel=0.2)
    assert set(table.type) <= {"inflammatory", "epithelial"}


def test_output_contract(disc_slide, tmp_path, predictor):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    slide, _ = disc_slide
    result = _segment(slide, tmp_path, predictor, 256, 32, csv=True)
    folder = result.out_dir
    for name in ("nuclei.parquet", "nuclei.csv", "masks.ome.zarr", "summary.json", "overview.png"):
        assert (folder / name).exists(), name
    table = pd.read_parquet(folder / "nuclei.parquet")
    assert list(table.columns[:12]) == [
        "id",
        "x",
        "y",
        "x_um",
        "y_um",
        "area_um2",
        "perimeter_um",
        "eccentricity",
        "solidity",
        "type",
        "type_id",
        "type_prob",
    ]
    root = zarr.open_group(str(folder / "masks.ome.zarr"), mode="r")
    instances = root["instances/0"][:]
    assert set(np.unique(instances[instances > 0]).tolist()) == set(table.id.tolist())
    classes = root["classes/0"][:]
    # Each nucleus' pixels carry its type in the class mask.
    for row in table.sample(20, random_state=0).itertuples():
        assert set(np.unique(classes[instances == row.id]).tolist()) == {row.type_id}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["nucleus_count"] == len(table)
    for name, stats in summary["types"].items():
        assert stats["count"] == int((table.type == name).sum())
    assert summary["tissue_area_mm2"] > 0
    csv = pd.read_csv(folder / "nuclei.csv")
    assert len(csv) == len(table) and csv.type.tolist() == table.type.astype(str).tolist()

    nodes = list(Reader(parse_url(str(folder / "masks.ome.zarr")))())
    labels = {n.metadata.get("name"): n for n in nodes if n.data}
    assert set(labels) == {"instances", "classes"}
    assert len(labels["instances"].data) >= 3
    shapes = [d.shape for d in labels["instances"].data]
    assert shapes == [(1000, 1200), (500, 600), (250, 300), (125, 150)]
    level1 = np.asarray(labels["instances"].data[1])
    assert np.array_equal(level1, instances[::2, ::2])
    attrs = root["classes"].attrs.asdict()
    scale = attrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [0.25, 0.25]
    names = {p["label-value"]: p["class"] for p in attrs["image-label"]["properties"]}
    assert names == {1: "other", 2: "inflammatory", 3: "epithelial", 4: "spindle"}
    assert len(attrs["image-label"]["colors"]) == 4


def test_resampled_slide_gives_level0_coordinates(tmp_path, predictor):
    """A 20x (0.5 µm/px) slide is upsampled for the 0.25 µm/px model; outputs stay level-0."""
    image, discs = make_disc_image(500, 400, 40, seed=3, radius=(5, 8))
    slide = write_pyramidal_tiff(tmp_path / "half.tiff", image, mpp=0.5)
    result = _segment(slide, tmp_path / "out", predictor, 256, 32)
    table = pd.read_parquet(result.out_dir / "nuclei.parquet")
    truth = pd.DataFrame(discs, columns=["x", "y", "r", "type_id"])
    assert len(match_centroids(truth, table, tol=1.0)) == len(truth)
    assert table.x_um.to_numpy() == pytest.approx(table.x.to_numpy() * 0.5)
    zattrs = zarr.open_group(str(result.out_dir / "masks.ome.zarr"), mode="r")["instances"].attrs
    assert zattrs["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] == [
        0.25,
        0.25,
    ]


def test_blank_slide_is_a_valid_empty_result(tmp_path, predictor):
    slide = write_pyramidal_tiff(
        tmp_path / "blank.tiff", np.full((600, 600, 3), 244, np.uint8), mpp=0.25
    )
    result = _segment(slide, tmp_path / "out", predictor, 256, 32)
    assert result.status == "done" and result.nuclei == 0
    table = pd.read_parquet(result.out_dir / "nuclei.parquet")
    assert len(table) == 0 and "type" in table.columns
    summary = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["nucleus_count"] == 0 and summary["tissue_area_mm2"] == 0


def test_finished_slide_is_skipped_and_resume_uses_finished_tiles(disc_slide, tmp_path, predictor):
    slide, _ = disc_slide
    first = _segment(slide, tmp_path, predictor, 256, 32)
    again = _segment(slide, tmp_path, predictor, 256, 32)
    assert again.status == "skipped"
    # Simulate an interrupted run: a partial folder with some finished tiles.
    import shutil

    reference = pd.read_parquet(first.out_dir / "nuclei.parquet")
    partial_root = tmp_path / "resume"
    _segment(slide, partial_root, predictor, 256, 32)
    finished = partial_root / "discs"
    work = partial_root / ".discs.partial"
    shutil.rmtree(finished)
    # Re-create a partial run that has only half of its tiles, then resume.
    settings = SegmentSettings(tile_size=256, margin=32, batch_size=2, progress=False)
    calls = []

    class Counting:
        def __init__(self, inner):
            self.inner, self.model, self.device, self.dtype = (
                inner,
                inner.model,
                inner.device,
                inner.dtype,
            )

        def __call__(self, batch):
            calls.append(len(batch))
            return self.inner(batch)

    from histobatch.resample import ModelSpace
    from histobatch.slide import open_slide
    from histobatch.stitch import owned_nuclei, save_tile
    from histobatch.tiling import TileGrid
    from histobatch.tissue import detect_tissue

    with open_slide(slide) as s:
        space = ModelSpace(s, 0.25)
        tissue = detect_tissue(s)
        grid = TileGrid.fitted(space.width, space.height, 256, 32)
        pad = math.ceil(TISSUE_PAD_UM / 0.25)
        tiles = grid.tiles_on_mask(tissue.mask, tissue.downsample * space.scale, pad=pad)
        for tile in tiles[: len(tiles) // 2]:
            maps = predictor(space.read(*tile.read_box)[None])[0]
            save_tile(
                owned_nuclei(
                    tile, maps, predictor.model.config.postprocess, (space.width, space.height)
                ),
                work / "tiles",
                tile.key,
            )
    write_json_atomic(work / FINGERPRINT_NAME, run_fingerprint(predictor, settings))
    kept = sorted((work / "tiles").iterdir())
    resumed = segment_slide(slide, partial_root, Counting(predictor), settings)
    assert sum(calls) == len(tiles) - len(tiles) // 2
    table = pd.read_parquet(resumed.out_dir / "nuclei.parquet")
    pd.testing.assert_frame_equal(table, reference)
    assert not work.exists()

    # Tiles made with other settings (here another margin) are never mixed in: all are redone.
    shutil.rmtree(resumed.out_dir)
    (work / "tiles").mkdir(parents=True)
    for path in kept:
        (work / "tiles" / path.name).write_bytes(b"not this run's tile")
    other = SegmentSettings(tile_size=256, margin=48, batch_size=2, progress=False)
    write_json_atomic(work / FINGERPRINT_NAME, run_fingerprint(predictor, other))
    calls.clear()
    redone = segment_slide(slide, partial_root, Counting(predictor), settings)
    assert sum(calls) == len(tiles)
    pd.testing.assert_frame_equal(pd.read_parquet(redone.out_dir / "nuclei.parquet"), reference)
