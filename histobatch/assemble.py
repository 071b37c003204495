"""Spilled tiles → table and masks: the assembly step of :mod:`histobatch.pipeline`.

Once every tile's nuclei are spilled (:mod:`histobatch.tile_runner`), the slide's outputs are
built from them one core-sized chunk at a time: the label pyramids of ``masks.ome.zarr``
(:class:`~histobatch.writers.ome_zarr.LabelPyramidWriter`), then ``nuclei.parquet``
(:class:`~histobatch.writers.table.NucleusTableWriter`, and ``nuclei.csv`` on request). Global ids
are ``offset[tile] + local id`` (:func:`histobatch.stitch.global_offsets`); the table keeps
exactly the nuclei that kept a pixel in the masks, so its ids are the masks' ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from histobatch.layout import CSV_NAME, MASKS_NAME, TABLE_NAME, TILES_DIR

if TYPE_CHECKING:
    from histobatch.model import ModelConfig
    from histobatch.resample import ModelSpace
    from histobatch.stitch import TileNuclei
    from histobatch.tiling import Tile, TileGrid


def assemble_outputs(
    work: Path,
    tiles: list[Tile],
    grid: TileGrid,
    space: ModelSpace,
    config: ModelConfig,
    csv: bool = False,
) -> dict[str, np.ndarray]:
    """Write the table and the label pyramids from the spilled tiles; return columns for stats.

    Parameters
    ----------
    work
        The slide's work folder; the spilled tiles are in its ``tiles/``.
    tiles
        Every tile of the slide that was run, in row-major order.
    grid
        The slide's tile grid.
    space
        The slide on the model grid (for its size and the level-0 coordinates).
    config
        The model's configuration (µm/px, class names and colours).
    csv
        Also write ``nuclei.csv``.

    Returns
    -------
    dict
        ``x``, ``y`` (level-0 pixels), ``type_id`` and ``area_um2`` of every nucleus in the table.
    """
    from histobatch.stitch import global_offsets, load_tile
    from histobatch.writers.ome_zarr import LabelPyramidWriter
    from histobatch.writers.table import NucleusTableWriter, parquet_to_csv

    tiles_dir = work / TILES_DIR
    by_index = {t.index: t for t in tiles}
    mpp = config.mpp
    counts = {}
    for tile in tiles:
        with np.load(tiles_dir / f"{tile.key}.npz") as data:
            counts[tile.index] = len(data["m_cx"])
    offsets = global_offsets(counts, grid.rows * grid.cols)

    masks = LabelPyramidWriter(
        work / MASKS_NAME,
        (space.height, space.width),
        grid.core,
        mpp,
        config.class_names,
        config.class_colors,
    )
    # Where nuclei of two tiles overlap, the first in tile order keeps the pixels; a nucleus left
    # with no pixel at all is a duplicate seen by two tiles and is dropped from the table too, so
    # the table's ids are exactly the mask's ids.
    painted_ids = np.zeros(sum(counts.values()) + 1, bool)
    cache: dict[int, Any] = {}
    core = grid.core
    chunks = sorted(
        {
            (t.row + dr, t.col + dc)
            for t in tiles
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if 0 <= t.row + dr < grid.rows and 0 <= t.col + dc < grid.cols
        }
    )
    for row, col in chunks:
        for index in [i for i in cache if by_index[i].row < row - 1]:
            del cache[index]
        y, x = row * core, col * core
        h, w = min(core, space.height - y), min(core, space.width - x)
        instances = np.zeros((h, w), np.uint32)
        classes = np.zeros((h, w), np.uint8)
        painted = False
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                index = r * grid.cols + c
                if not (0 <= r < grid.rows and 0 <= c < grid.cols) or index not in by_index:
                    continue
                if index not in cache:
                    cache[index] = load_tile(tiles_dir / f"{by_index[index].key}.npz")
                painted |= _paint(instances, classes, x, y, cache[index], offsets[index])
        if painted:
            masks.write_chunk(y, x, instances, classes)
            painted_ids[instances[instances > 0]] = True
    masks.build_pyramid()

    collected: dict[str, list] = {"x": [], "y": [], "type_id": [], "area_um2": []}
    writer = NucleusTableWriter(work / TABLE_NAME, config.class_names)
    try:
        for tile in tiles:
            nuclei = load_tile(tiles_dir / f"{tile.key}.npz", labels=False)
            if nuclei.count == 0:
                continue
            ids = offsets[tile.index] + np.arange(1, nuclei.count + 1)
            keep = painted_ids[ids]
            table = {k: v[keep] for k, v in nuclei.table.items()}
            x0, y0 = space.to_level0(table["cx"], table["cy"])
            columns = {
                "id": ids[keep],
                "x": x0,
                "y": y0,
                "x_um": x0 * space.slide.mpp,
                "y_um": y0 * space.slide.mpp,
                "area_um2": table["area"] * mpp**2,
                "perimeter_um": table["perimeter"] * mpp,
                "eccentricity": table["eccentricity"],
                "solidity": table["solidity"],
                "type_id": table["type_id"],
                "type_prob": table["type_prob"],
            }
            writer.write(columns)
            for key in collected:
                collected[key].append(np.asarray(columns[key]))
    finally:
        writer.close()
    if csv:
        parquet_to_csv(work / TABLE_NAME, work / CSV_NAME)

    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in collected.items()}


def _paint(
    instances: np.ndarray,
    classes: np.ndarray,
    x: int,
    y: int,
    nuclei: TileNuclei,
    offset: int,
) -> bool:
    """Paint a tile's owned nuclei into the chunk at ``(x, y)``; return True if any pixel."""
    labels = nuclei.labels
    if labels.size == 0:
        return False
    h, w = instances.shape
    x0, y0 = max(x, nuclei.offset_x), max(y, nuclei.offset_y)
    x1 = min(x + w, nuclei.offset_x + labels.shape[1])
    y1 = min(y + h, nuclei.offset_y + labels.shape[0])
    if x1 <= x0 or y1 <= y0:
        return False
    part = labels[
        y0 - nuclei.offset_y : y1 - nuclei.offset_y, x0 - nuclei.offset_x : x1 - nuclei.offset_x
    ]
    target = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    free = (part > 0) & (instances[target] == 0)
    if not free.any():
        return False
    type_lut = np.concatenate([[0], nuclei.table["type_id"]]).astype(np.uint8)
    instances[target][free] = part[free].astype(np.uint32) + np.uint32(offset)
    classes[target][free] = type_lut[part[free]]
    return True
