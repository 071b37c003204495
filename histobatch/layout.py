"""The output layout: a slide's folder ``OUT/<slide id>/`` and the names of the files in it.

Every step of the data flow that writes or reads a slide folder (the pipeline, the assembly of
its outputs, the report, the exports, the cohort table, evaluation) takes the names from here, so
that no writer or reader has to import the pipeline for them; this module imports only
:mod:`histobatch.errors`. A public contract, see the README.
"""

from __future__ import annotations

from pathlib import Path

from histobatch.errors import HistobatchError

#: One row per nucleus (:mod:`histobatch.writers.table`).
TABLE_NAME = "nuclei.parquet"
#: The table as CSV (``--csv``).
CSV_NAME = "nuclei.csv"
#: Instance and class label pyramids (:mod:`histobatch.writers.ome_zarr`).
MASKS_NAME = "masks.ome.zarr"
#: Slide statistics and run metadata; written last, so its presence marks a finished slide.
SUMMARY_NAME = "summary.json"
#: Thumbnail with the tissue outline and nuclei coloured by type.
OVERVIEW_NAME = "overview.png"
#: Self-contained HTML report (:mod:`histobatch.report`).
REPORT_NAME = "report.html"
#: QuPath detections (``--geojson`` or ``histobatch export geojson``).
GEOJSON_NAME = "nuclei.geojson"
#: HoVer-Net's JSON layout (``histobatch export hovernet``).
HOVERNET_NAME = "nuclei.hovernet.json"
#: AnnData of the nuclei for scanpy/squidpy (``histobatch export anndata``).
ANNDATA_NAME = "nuclei.h5ad"
#: SpatialData store: labels, nucleus shapes and the table (``histobatch export spatialdata``).
SPATIALDATA_NAME = "nuclei.spatialdata.zarr"
#: How an unfinished slide's tiles were made (only in ``OUT/.<slide id>.partial/``).
FINGERPRINT_NAME = "run.json"
#: Folder of spilled tiles (only in ``OUT/.<slide id>.partial/``).
TILES_DIR = "tiles"


def slide_id_of(path: str | Path) -> str:
    """Output folder name of a slide: its file name without the format suffix(es)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def check_slide_id(slide_id: str) -> str:
    """Refuse slide ids that are not a plain, visible folder name."""
    if not slide_id or slide_id.startswith(".") or any(c in slide_id for c in "/\\\0"):
        raise HistobatchError(
            f"slide id {slide_id!r} is not a plain folder name; use letters, digits, '-', '_'"
        )
    return slide_id


def is_finished(folder: Path) -> bool:
    """A slide folder is finished when its summary exists (written last, then renamed)."""
    return (folder / SUMMARY_NAME).is_file()
