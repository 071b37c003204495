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


def iter_outlines(
    masks_path: str | Path, table_path: str | Path, scale: float
) -> Iterator[Outline]:
    """Yield the outline of every nucleus of the table, chunk by chunk.

    Parameters
    ----------
    masks_path
        ``masks.ome.zarr`` (level 0 of ``instances`` is on the model grid).
    table_path
        ``nuclei.parquet`` (``id``, ``x``, ``y`` in level-0 pixels, type and measurements).
    scale
        Model pixels per level-0 pixel (slide µm/px divided by model µm/px).
    """
    import pyarrow.parquet as pq
    import zarr
    from scipy import ndimage

    # Only the numeric columns, straight to numpy: ~50 bytes per nucleus, no data frame.
    columns = ["id", "x", "y", "type_id", "type_prob", "area_um2"]
    table = {
        name: column.to_numpy()
        for name, column in zip(
            columns, pq.read_table(table_path, columns=columns).columns, strict=True
        )
    }
    if len(table["id"]) == 0:
        return
    class_names, _ = label_classes(masks_path)
    instances = zarr.open_group(str(Path(masks_path) / "instances"), mode="r")["0"]
    height, width = instances.shape
    chunk_h, chunk_w = instances.chunks
    # Centroids on the model grid (inverse of ModelSpace.to_level0) decide the owner chunk.
    mx = (table["x"] + 0.5) * scale - 0.5
    my = (table["y"] + 0.5) * scale - 0.5
    rows = np.clip(my // chunk_h, 0, (height - 1) // chunk_h).astype(int)
    cols = np.clip(mx // chunk_w, 0, (width - 1) // chunk_w).astype(int)
    order = np.lexsort((table["id"], cols, rows))
    rows, cols = rows[order], cols[order]
    ids, xs, ys = table["id"][order], table["x"][order], table["y"][order]
    type_ids, type_probs = table["type_id"][order], table["type_prob"][order]
    areas = table["area_um2"][order]
    del table
    bounds = np.flatnonzero(np.diff(rows * (cols.max() + 1) + cols)) + 1
    for group in np.split(np.arange(len(ids)), bounds):
        row, col = rows[group[0]], cols[group[0]]
        y0, x0 = max(0, row * chunk_h - CROP_MARGIN), max(0, col * chunk_w - CROP_MARGIN)
        y1 = min(height, (row + 1) * chunk_h + CROP_MARGIN)
        x1 = min(width, (col + 1) * chunk_w + CROP_MARGIN)
        crop = np.asarray(instances[y0:y1, x0:x1])
        wanted = np.sort(ids[group])
        # Crop pixels of this chunk's nuclei -> 1..k (a lookup, no crop-sized sort).
        nonzero = np.flatnonzero(crop)
        values = crop.ravel()[nonzero]
        position = np.minimum(np.searchsorted(wanted, values), len(wanted) - 1)
        hit = wanted[position] == values
        local = np.zeros(crop.shape, np.int32)
        local.ravel()[nonzero[hit]] = position[hit] + 1
        uniques = wanted
        boxes = ndimage.find_objects(local)
        for index in group:
            position = int(np.searchsorted(uniques, ids[index]))
            box = boxes[position] if position < len(boxes) else None
            if box is None:
                continue  # no pixel in this crop (cannot happen for a stitched slide)
            polygon = _trace(local[box] == position + 1)
            # Crop-local (row, col) -> model grid -> level-0 pixels.
            model_x = polygon[:, 1] + box[1].start + x0
            model_y = polygon[:, 0] + box[0].start + y0
            level0 = np.stack([(model_x + 0.5) / scale - 0.5, (model_y + 0.5) / scale - 0.5], 1)
            yield Outline(
                id=int(ids[index]),
                type_id=int(type_ids[index]),
                type_name=class_names.get(int(type_ids[index]), str(type_ids[index])),
                type_prob=float(type_probs[index]),
                area_um2=float(areas[index]),
                centroid=(float(xs[index]), float(ys[index])),
                polygon=level0,
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
