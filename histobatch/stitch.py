"""Per-tile ownership of nuclei, spilling to disk, and global ids.

Each tile keeps only the nuclei whose centroid lies in its core (DESIGN.md §3) and writes them to
``tiles/<key>.npz`` in the slide's work folder: the owned-instance label crop (int32, local ids
1..n in raster order of centroids) and one row of measurements per nucleus. Global ids are then
``offset[tile] + local id`` with offsets accumulated in row-major tile order, so they depend only on
the slide, the model and the settings, not on the order in which tiles finish.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from histobatch.measure import label_centroids, shape_measurements
from histobatch.model import PostprocessConfig
from histobatch.postprocess import instances_from_maps
from histobatch.tiling import Tile

#: Per-nucleus measurement columns stored per tile (model-grid pixels).
MEASUREMENTS = ("cx", "cy", "area", "perimeter", "eccentricity", "solidity", "type_id", "type_prob")


@dataclass
class TileNuclei:
    """The nuclei a tile owns.

    Attributes
    ----------
    tile_index
        Row-major tile index.
    labels
        Owned-instance label crop (int32, local ids 1..n), or an empty array.
    offset_x, offset_y
        Model-grid position of ``labels[0, 0]``.
    table
        Column name -> ``(n,)`` array, see :data:`MEASUREMENTS`; ``cx, cy`` on the model grid.
    """

    tile_index: int
    labels: np.ndarray
    offset_x: int
    offset_y: int
    table: dict[str, np.ndarray]

    @property
    def count(self) -> int:
        return len(self.table["cx"])


def owned_nuclei(
    tile: Tile, maps: np.ndarray, settings: PostprocessConfig, image_size: tuple[int, int]
) -> TileNuclei:
    """Post-process one tile's maps and keep the nuclei it owns.

    Parameters
    ----------
    tile
        The tile (its read box is the frame of ``maps``).
    maps
        ``(2 + K, S, S)`` from :class:`histobatch.inference.Predictor`.
    settings
        Post-processing thresholds of the model.
    image_size
        ``(width, height)`` of the model grid (nuclei are clipped to the slide).
    """
    rx, ry, size, _ = tile.read_box
    # Pixels outside the slide (padding) are never nuclear.
    width, height = image_size
    np_prob = maps[0].copy()
    if rx < 0 or ry < 0 or rx + size > width or ry + size > height:
        valid_x = (np.arange(size) + rx >= 0) & (np.arange(size) + rx < width)
        valid_y = (np.arange(size) + ry >= 0) & (np.arange(size) + ry < height)
        np_prob[~valid_y, :] = 0
        np_prob[:, ~valid_x] = 0
    found = instances_from_maps(np_prob, maps[1], maps[2:], settings)
    labels = found.labels
    n = int(labels.max())
    cy, cx, area = label_centroids(labels)
    gx, gy = cx + rx, cy + ry
    in_core = (tile.x <= gx) & (gx < tile.x + tile.width)
    in_core &= (tile.y <= gy) & (gy < tile.y + tile.height) & (area > 0)
    # Local ids 1..k in raster order of the centroids (row, then column).
    kept = np.flatnonzero(in_core)
    kept = kept[np.lexsort((gx[kept], gy[kept]))]
    measured = shape_measurements(labels, kept + 1, cy, cx, area)
    table = {
        "cx": gx[kept],
        "cy": gy[kept],
        "area": area[kept],
        "perimeter": measured["perimeter"],
        "eccentricity": measured["eccentricity"],
        "solidity": measured["solidity"],
        "type_id": found.types[kept].astype(np.int64),
        "type_prob": found.type_probs[kept].astype(np.float64),
    }
    lut = np.zeros(n + 1, np.int32)
    lut[kept + 1] = np.arange(1, len(kept) + 1, dtype=np.int32)
    keep = len(kept) > 0
    owned = lut[labels]
    if keep:
        ys, xs = np.nonzero(owned)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        crop = owned[y0:y1, x0:x1]
    else:
        y0 = x0 = 0
        crop = np.zeros((0, 0), np.int32)
    return TileNuclei(tile.index, crop, int(rx + x0), int(ry + y0), table)


def save_tile(nuclei: TileNuclei, folder: Path, key: str) -> Path:
    """Write ``<key>.npz`` atomically (temporary name, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.npz"
    temporary = folder / f".{key}.tmp.npz"
    np.savez_compressed(
        temporary,
        labels=nuclei.labels,
        offset=np.array([nuclei.offset_x, nuclei.offset_y, nuclei.tile_index]),
        **{f"m_{k}": v for k, v in nuclei.table.items()},
    )
    os.replace(temporary, path)
    return path


def load_tile(path: Path, labels: bool = True) -> TileNuclei:
    """Read a tile written by :func:`save_tile` (``labels=False`` skips the label crop)."""
    with np.load(path) as data:
        offset_x, offset_y, index = (int(v) for v in data["offset"])
        table = {k[2:]: data[k] for k in data.files if k.startswith("m_")}
        crop = data["labels"] if labels else np.zeros((0, 0), np.int32)
        return TileNuclei(index, crop, offset_x, offset_y, table)


def global_offsets(counts: dict[int, int], n_tiles: int) -> np.ndarray:
    """First global id minus one for every tile, in row-major tile order.

    Examples
    --------
    >>> global_offsets({0: 3, 2: 5}, 4).tolist()
    [0, 3, 3, 8]
    """
    per_tile = np.zeros(n_tiles, np.int64)
    for index, count in counts.items():
        per_tile[index] = count
    return np.concatenate([[0], np.cumsum(per_tile)[:-1]])
