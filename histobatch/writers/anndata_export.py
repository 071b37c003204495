"""The nuclei of a finished slide folder as AnnData (``nuclei.h5ad``) for scanpy and squidpy.

One row per nucleus: ``obs`` holds every column of ``nuclei.parquet`` (``type`` categorical, in the
model's type order, without the background), the index is the nucleus id as a string (the value
in the instance mask), ``obsm["spatial"]`` the centroid ``(x_um, y_um)`` in micrometres,
``uns["type_colors"]`` the type colours in category order (scanpy and squidpy colour ``type``
with them) and ``uns["histobatch"]`` the slide summary (µm/px, tissue, counts, model, run), with
the whole ``summary.json`` as text in ``uns["histobatch"]["summary_json"]``. ``X`` is empty
(no variables): the measurements are ``obs`` columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from histobatch.errors import HistobatchError
from histobatch.layout import ANNDATA_NAME, MASKS_NAME, SUMMARY_NAME, TABLE_NAME
from histobatch.writers.outlines import label_classes
from histobatch.writers.scverse_compat import object_strings

INSTALL_SCVERSE = "pip install 'histobatch[scverse]'"


def require(package: str, command: str):
    """Import ``package`` or stop with the install line of the scverse extra."""
    import importlib
    import warnings

    try:
        with warnings.catch_warnings():  # spatialdata 0.7.0 imports the deprecated pkg_resources
            warnings.filterwarnings("ignore", message=".*pkg_resources.*")
            return importlib.import_module(package)
    except ImportError:
        raise HistobatchError(f"{command} needs {package}: {INSTALL_SCVERSE}") from None


def finished_summary(folder: Path) -> dict[str, Any]:
    """``summary.json`` of a finished slide folder; refuses anything else."""
    path = folder / SUMMARY_NAME
    if not path.is_file():
        raise HistobatchError(
            "not a finished slide folder (no summary.json); pass OUT/<slide> of segment", folder
        )
    return json.loads(path.read_text())


def hex_color(rgb) -> str:
    """``[r, g, b]`` -> ``#rrggbb``."""
    return "#" + "".join(f"{int(v):02x}" for v in list(rgb)[:3])


def _plain(value):
    """A JSON value that h5ad can store: no ``None``, lists as arrays."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in value):
            return np.asarray(value)
        if all(isinstance(v, str) for v in value):
            return np.asarray(value, dtype=object)
        return {str(i): _plain(v) for i, v in enumerate(value) if v is not None}
    return value


def nuclei_anndata(folder: str | Path):
    """The AnnData of a finished slide folder (see the module notes).

    Raises
    ------
    HistobatchError
        If the folder is not a finished slide or anndata is not installed.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    anndata = require("anndata", "histobatch export anndata")
    folder = Path(folder)
    summary = finished_summary(folder)
    names, colors = label_classes(folder / MASKS_NAME)
    type_ids = sorted(names)
    with object_strings():
        frame = pq.read_table(folder / TABLE_NAME).to_pandas()
        codes = np.searchsorted(type_ids, frame["type_id"].to_numpy())
        if len(frame) and not np.array_equal(
            np.asarray(type_ids)[np.minimum(codes, len(type_ids) - 1)], frame["type_id"]
        ):
            raise HistobatchError("nuclei.parquet has types that the masks do not list", folder)
        categories = pd.Index([names[i] for i in type_ids], dtype=object)
        frame["type"] = pd.Categorical.from_codes(codes, categories=categories)
        frame.index = pd.Index(frame["id"].astype(str).to_numpy(dtype=object), dtype=object)
        adata = anndata.AnnData(obs=frame)
        adata.obsm["spatial"] = frame[["x_um", "y_um"]].to_numpy(np.float64)
        adata.uns["type_colors"] = np.asarray(
            [hex_color(colors.get(i, [128, 128, 128])) for i in type_ids], dtype=object
        )
        info = _plain(summary)
        info["spatial_unit"] = "micrometer"
        info["summary_json"] = json.dumps(summary)
        adata.uns["histobatch"] = info
    return adata


def write_anndata(folder: str | Path, out: str | Path | None = None) -> tuple[Path, int]:
    """Write ``FOLDER/nuclei.h5ad`` (or ``out``); return the path and the number of nuclei."""
    folder = Path(folder)
    adata = nuclei_anndata(folder)
    target = Path(out) if out else folder / ANNDATA_NAME
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with object_strings():
            adata.write_h5ad(temporary, compression="gzip")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target, adata.n_obs
