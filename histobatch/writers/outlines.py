"""Nucleus outlines from a slide's instance mask, streamed chunk by chunk, in level-0 pixels.

Every nucleus is traced once, in the mask chunk that holds its centroid (from the nuclei table),
on a crop of that chunk grown by a margin wide enough for any nucleus, so memory stays at one chunk
whatever the number of nuclei. Outlines are the iso-line at 0.5 of the nucleus's pixels (corners
cut at half a pixel), mapped from the model grid to level-0 pixels of the slide.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Model pixels around a chunk: the tiling margin, so any nucleus a tile could own fits.
CROP_MARGIN = 192


@dataclass
class Outline:
    """One nucleus: its table row and its polygon (level-0 pixels, closed, x then y)."""

    id: int
    type_id: int
    type_name: str
    type_prob: float
    area_um2: float
    centroid: tuple[float, float]
    polygon: np.ndarray  # (n, 2) x, y; first point repeated at the end


def label_classes(masks_path: str | Path) -> tuple[dict[int, str], dict[int, list[int]]]:
    """Class names and RGB colours from the ``classes`` label's ``image-label`` metadata."""
    import zarr

    meta = zarr.open_group(str(Path(masks_path) / "classes"), mode="r").attrs["image-label"]
    names = {p["label-value"]: p["class"] for p in meta.get("properties", [])}
    colors = {c["label-value"]: list(c["rgba"][:3]) for c in meta.get("colors", [])}
    return names, colors


COLUMNS = ["id", "x", "y", "type_id", "type_prob", "area_um2"]
#: Rows read from the Parquet file at a time.
BATCH_ROWS = 16_384


def iter_outlines(
    masks_path: str | Path, table_path: str | Path, scale: float
) -> Iterator[Outline]:
    """Yield the outline of every nucleus of the table, chunk by chunk.

    Tables written by ``segment`` list nuclei in tile order, and tile cores are the mask's chunks,
    so the rows of one chunk are consecutive: they are streamed from the Parquet file in batches
    and memory does not grow with the number of nuclei. Any other row order is sorted first.

    Parameters
    ----------
    masks_path
        ``masks.ome.zarr`` (level 0 of ``instances`` is on the model grid).
    table_path
        ``nuclei.parquet`` (``id``, ``x``, ``y`` in level-0 pixels, type and measurements).
    scale
        Model pixels per level-0 pixel (slide µm/px divided by model µm/px).
    """
    import zarr

    class_names, _ = label_classes(masks_path)
    instances = zarr.open_group(str(Path(masks_path) / "instances"), mode="r")["0"]
    grid = _ChunkGrid(instances.shape, instances.chunks, scale)
    groups = _chunk_groups(table_path, grid)
    for key, columns in groups:
        yield from _outlines_of_chunk(instances, grid, key, columns, scale, class_names)


class _ChunkGrid:
    """Which mask chunk owns a nucleus: the one holding its centroid on the model grid."""

    def __init__(self, shape, chunks, scale: float) -> None:
        self.height, self.width = shape
        self.chunk_h, self.chunk_w = chunks
        self.scale = scale
        self.cols = -(-self.width // self.chunk_w)

    def keys(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row-major chunk index of level-0 centroids (inverse of ModelSpace.to_level0)."""
        mx = (x + 0.5) * self.scale - 0.5
        my = (y + 0.5) * self.scale - 0.5
        rows = np.clip(my // self.chunk_h, 0, (self.height - 1) // self.chunk_h).astype(np.int64)
        cols = np.clip(mx // self.chunk_w, 0, (self.width - 1) // self.chunk_w).astype(np.int64)
        return rows * self.cols + cols


def _batches(table_path, columns: list[str]):
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(table_path).iter_batches(BATCH_ROWS, columns=columns):
        yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}


def _chunk_groups(table_path, grid: _ChunkGrid):
    """``(chunk key, columns)`` for every chunk with nuclei, streamed when rows are in order."""
    in_order, last = True, -1
    for batch in _batches(table_path, ["x", "y"]):  # a cheap first pass: is the file in order?
        keys = grid.keys(batch["x"], batch["y"])
        if len(keys) and (keys[0] < last or np.any(np.diff(keys) < 0)):
            in_order = False
            break
        last = keys[-1] if len(keys) else last
    if not in_order:
        yield from _sorted_groups(table_path, grid)
        return
    pending: list[dict] = []
    pending_key = None
    for batch in _batches(table_path, COLUMNS):
        keys = grid.keys(batch["x"], batch["y"])
        starts = np.flatnonzero(np.r_[True, np.diff(keys) != 0])
        for start, stop in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
            key = int(keys[start])
            part = {name: values[start:stop] for name, values in batch.items()}
            if pending and key != pending_key:
                yield pending_key, _concatenate(pending)
                pending = []
            pending.append(part)
            pending_key = key
    if pending:
        yield pending_key, _concatenate(pending)


def _sorted_groups(table_path, grid: _ChunkGrid):
    import pyarrow.parquet as pq

    table = pq.read_table(table_path, columns=COLUMNS)
    columns = {name: table.column(name).to_numpy() for name in COLUMNS}
    keys = grid.keys(columns["x"], columns["y"])
    order = np.lexsort((columns["id"], keys))
    keys = keys[order]
    columns = {name: values[order] for name, values in columns.items()}
    starts = np.flatnonzero(np.r_[True, np.diff(keys) != 0])
    for start, stop in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
        yield int(keys[start]), {name: values[start:stop] for name, values in columns.items()}


def _concatenate(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _outlines_of_chunk(instances, grid: _ChunkGrid, key: int, columns, scale, class_names):
    """Trace the nuclei owned by chunk ``key`` on that chunk grown by :data:`CROP_MARGIN`."""
    from scipy import ndimage

    row, col = divmod(key, grid.cols)
    y0 = max(0, row * grid.chunk_h - CROP_MARGIN)
    x0 = max(0, col * grid.chunk_w - CROP_MARGIN)
    y1 = min(grid.height, (row + 1) * grid.chunk_h + CROP_MARGIN)
    x1 = min(grid.width, (col + 1) * grid.chunk_w + CROP_MARGIN)
    crop = np.asarray(instances[y0:y1, x0:x1])
    order = np.argsort(columns["id"], kind="stable")
    wanted = columns["id"][order]
    # Crop pixels of this chunk's nuclei -> 1..k (a lookup, no crop-sized sort).
    nonzero = np.flatnonzero(crop)
    values = crop.ravel()[nonzero]
    position = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
    hit = wanted[position] == values
    local = np.zeros(crop.shape, np.int32)
    local.ravel()[nonzero[hit]] = position[hit] + 1
    boxes = ndimage.find_objects(local)
    for rank, index in enumerate(order):
        box = boxes[rank] if rank < len(boxes) else None
        if box is None:
            continue  # no pixel in this crop (cannot happen for a stitched slide)
        polygon = _trace(local[box] == rank + 1)
        # Crop-local (row, col) -> model grid -> level-0 pixels.
        model_x = polygon[:, 1] + box[1].start + x0
        model_y = polygon[:, 0] + box[0].start + y0
        type_id = int(columns["type_id"][index])
        yield Outline(
            id=int(columns["id"][index]),
            type_id=type_id,
            type_name=class_names.get(type_id, str(type_id)),
            type_prob=float(columns["type_prob"][index]),
            area_um2=float(columns["area_um2"][index]),
            centroid=(float(columns["x"][index]), float(columns["y"][index])),
            polygon=np.stack([(model_x + 0.5) / scale - 0.5, (model_y + 0.5) / scale - 0.5], 1),
        )


def _trace(mask: np.ndarray) -> np.ndarray:
    """Closed outline ``(n, 2)`` (row, col) of the largest component of a boolean mask."""
    from skimage.measure import find_contours

    contours = find_contours(np.pad(mask, 1).astype(np.uint8), 0.5)
    contour = max(contours, key=_enclosed_area) - 1.0  # undo the padding
    if not np.array_equal(contour[0], contour[-1]):
        contour = np.vstack([contour, contour[:1]])
    return contour


def _enclosed_area(contour: np.ndarray) -> float:
    y, x = contour[:, 0], contour[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
