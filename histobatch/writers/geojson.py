"""Nucleus polygons for viewers: QuPath GeoJSON and HoVer-Net's JSON layout, streamed to disk.

Both are written one nucleus at a time from :func:`histobatch.writers.outlines.iter_outlines`
(never the whole collection in memory), under a temporary name renamed when complete, optionally
gzip-compressed (a ``.gz`` suffix). Coordinates are level-0 pixels of the input slide.

QuPath: *File > Import objects* (or drag the file onto the slide) reads the FeatureCollection as
detections, with their class (name and colour) and measurements.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from histobatch.layout import GEOJSON_NAME, HOVERNET_NAME, MASKS_NAME, SUMMARY_NAME, TABLE_NAME
from histobatch.writers.outlines import iter_outlines, label_classes


def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=6)
    return open(path, "w", encoding="utf-8")


def _coordinates(polygon: np.ndarray) -> list[list[float]]:
    return np.round(polygon, 2).tolist()


def _write_streamed(out: Path, opening: str, closing: str, pieces) -> int:
    """Write ``opening``, the JSON ``pieces`` separated by commas, ``closing``; return the count.

    Under a temporary name renamed when complete, so a reader never sees half a file.
    """
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp{out.suffix}")
    count = 0
    try:
        with _open_text(temporary) as handle:
            handle.write(opening)
            for piece in pieces:
                handle.write(("" if count == 0 else ",\n") + piece)
                count += 1
            handle.write(closing)
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return count


def write_geojson(
    masks_path: str | Path, table_path: str | Path, scale: float, out: str | Path
) -> int:
    """Write a QuPath-importable FeatureCollection of nucleus detections; return the count.

    Each feature: ``Polygon`` geometry, ``properties.objectType = "detection"``,
    ``properties.classification = {name, color}`` and ``properties.measurements`` (area in µm²,
    type probability), plus the table ``id``.
    """
    names, colors = label_classes(masks_path)

    def feature(outline) -> str:
        return json.dumps(
            {
                "type": "Feature",
                "id": f"nucleus-{outline.id}",
                "geometry": {"type": "Polygon", "coordinates": [_coordinates(outline.polygon)]},
                "properties": {
                    "objectType": "detection",
                    "classification": {
                        "name": names.get(outline.type_id, outline.type_name),
                        "color": colors.get(outline.type_id, [128, 128, 128]),
                    },
                    "measurements": {
                        "area_um2": round(outline.area_um2, 3),
                        "type_prob": round(outline.type_prob, 4),
                    },
                    "nucleus_id": outline.id,
                },
            }
        )

    outlines = iter_outlines(masks_path, table_path, scale)
    opening = '{"type": "FeatureCollection", "features": [\n'
    return _write_streamed(Path(out), opening, "\n]}\n", map(feature, outlines))


def write_hovernet_json(
    masks_path: str | Path,
    table_path: str | Path,
    scale: float,
    out: str | Path,
    magnification: float | None = None,
) -> int:
    """Write HoVer-Net's output layout ``{"mag", "nuc": {id: {bbox, centroid, contour, type,
    type_prob}}}`` (``bbox`` as ``[[row_min, col_min], [row_max, col_max]]``); return the count.
    """

    def record(outline) -> str:
        polygon = outline.polygon[:-1]
        low = np.floor(polygon.min(0)).astype(int)
        high = np.ceil(polygon.max(0)).astype(int)
        body = {
            "bbox": [[int(low[1]), int(low[0])], [int(high[1]), int(high[0])]],
            "centroid": [round(outline.centroid[0], 2), round(outline.centroid[1], 2)],
            "contour": _coordinates(polygon),
            "type": outline.type_id,
            "type_prob": round(outline.type_prob, 4),
        }
        return f'"{outline.id}": ' + json.dumps(body)

    outlines = iter_outlines(masks_path, table_path, scale)
    opening = '{"mag": ' + json.dumps(magnification) + ', "nuc": {\n'
    return _write_streamed(Path(out), opening, "\n}}\n", map(record, outlines))


def export_slide_folder(folder: str | Path, kind: str, out: str | Path | None = None, gz=False):
    """Export a finished slide folder (``OUT/<slide>``) as ``geojson`` or ``hovernet`` JSON.

    Returns
    -------
    (Path, int)
        The file written and the number of nuclei in it.
    """
    from histobatch.errors import HistobatchError

    folder = Path(folder)
    summary_path = folder / SUMMARY_NAME
    if not summary_path.is_file():
        raise HistobatchError(
            "not a finished slide folder (no summary.json); pass OUT/<slide> of segment", folder
        )
    summary = json.loads(summary_path.read_text())
    scale = summary["mpp"] / summary["model_mpp"]
    name = GEOJSON_NAME if kind == "geojson" else HOVERNET_NAME
    target = Path(out) if out else folder / (name + (".gz" if gz else ""))
    masks, table = folder / MASKS_NAME, folder / TABLE_NAME
    if kind == "geojson":
        return target, write_geojson(masks, table, scale, target)
    if kind == "hovernet":
        return target, write_hovernet_json(
            masks, table, scale, target, summary.get("objective_power")
        )
    raise HistobatchError(f"unknown export kind {kind!r}; use geojson or hovernet")
