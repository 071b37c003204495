"""A finished slide folder as a SpatialData store (``nuclei.spatialdata.zarr``).

Elements, all in the coordinate system ``global`` in micrometres of the slide, the frame of the
table's ``x_um``/``y_um`` (level-0 pixel centre times the slide's µm/px):

- labels ``instances`` (uint32 nucleus ids) and ``classes`` (uint8 type ids): level 0 of
  ``masks.ome.zarr`` (the model grid), with the pyramid rebuilt by spatialdata (nearest
  neighbour); transformation: scale by the model's µm/px, then shift by half a slide pixel (the
  model grid's pixel areas onto the table's pixel-centre convention);
- shapes ``nuclei``: one polygon per nucleus (:mod:`histobatch.writers.outlines`, as in the
  GeoJSON export), in micrometres, indexed by nucleus id;
- table ``table``: the AnnData of :mod:`histobatch.writers.anndata_export`, annotating the labels
  ``instances`` (``region_key="region"``, ``instance_key="instance_id"``; the shapes share the ids,
  so ``sdata.set_table_annotates_spatialelement("table", region="nuclei")`` re-targets it).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from histobatch.layout import MASKS_NAME, SPATIALDATA_NAME, TABLE_NAME
from histobatch.writers.anndata_export import finished_summary, nuclei_anndata, require
from histobatch.writers.outlines import iter_outlines
from histobatch.writers.scverse_compat import object_strings, regular_chunks

COORDINATES = "global"
LABELS = ("instances", "classes")
SHAPES = "nuclei"
TABLE = "table"
COMMAND = "histobatch export spatialdata"


def label_elements(masks: Path, model_mpp: float, slide_mpp: float) -> dict:
    """The instance and class labels of ``masks.ome.zarr`` as spatialdata multiscale labels."""
    import dask.array as da
    import zarr
    from spatialdata.models import Labels2DModel
    from spatialdata.transformations import Scale, Sequence, Translation

    to_um = Sequence(
        [
            Scale([model_mpp, model_mpp], axes=("y", "x")),
            Translation([-0.5 * slide_mpp, -0.5 * slide_mpp], axes=("y", "x")),
        ]
    )
    elements = {}
    for name in LABELS:
        group = zarr.open_group(str(masks / name), mode="r")
        levels = len(group.attrs["multiscales"][0]["datasets"])
        level0 = da.from_zarr(group["0"])
        elements[name] = Labels2DModel.parse(
            level0,
            dims=("y", "x"),
            transformations={COORDINATES: to_um},
            scale_factors=[2] * (levels - 1) if levels > 1 else None,
            chunks=level0.chunksize,
        )
    return elements


def shapes_element(masks: Path, table: Path, scale: float, slide_mpp: float):
    """Nucleus polygons in micrometres, indexed by nucleus id (``None`` without nuclei)."""
    import geopandas as gpd
    import pandas as pd
    import shapely
    from spatialdata.models import ShapesModel
    from spatialdata.transformations import Identity

    ids, polygons = [], []
    for outline in iter_outlines(masks, table, scale):
        ids.append(outline.id)
        polygons.append(shapely.Polygon(outline.polygon * slide_mpp))
    if not ids:
        return None  # a blank slide: no shapes element
    frame = gpd.GeoDataFrame(geometry=polygons, index=pd.Index(np.asarray(ids, np.int64)))
    return ShapesModel.parse(frame, transformations={COORDINATES: Identity()})


def write_spatialdata(folder: str | Path, out: str | Path | None = None) -> tuple[Path, int]:
    """Write ``FOLDER/nuclei.spatialdata.zarr`` (or ``out``); return the path and the nuclei count.

    Written under a temporary name and renamed when complete (an older store is replaced).

    Raises
    ------
    HistobatchError
        If the folder is not a finished slide or spatialdata is not installed.
    """
    import pandas as pd

    require("anndata", COMMAND)
    spatialdata = require("spatialdata", COMMAND)
    from spatialdata.models import TableModel

    folder = Path(folder)
    summary = finished_summary(folder)
    model_mpp, slide_mpp = float(summary["model_mpp"]), float(summary["mpp"])
    masks = folder / MASKS_NAME
    target = Path(out) if out else folder / SPATIALDATA_NAME
    temporary = target.with_name(f".{target.stem}.{os.getpid()}.tmp.zarr")
    with object_strings(), regular_chunks():
        adata = nuclei_anndata(folder)
        adata.obs["region"] = pd.Categorical(
            [LABELS[0]] * adata.n_obs, categories=pd.Index([LABELS[0]], dtype=object)
        )
        adata.obs["instance_id"] = adata.obs["id"].to_numpy(np.int64)
        if adata.n_obs:
            table = TableModel.parse(
                adata, region=LABELS[0], region_key="region", instance_key="instance_id"
            )
        else:  # a blank slide: spatialdata refuses an annotation without rows
            table = TableModel.parse(adata)
        shapes = shapes_element(masks, folder / TABLE_NAME, slide_mpp / model_mpp, slide_mpp)
        sdata = spatialdata.SpatialData(
            labels=label_elements(masks, model_mpp, slide_mpp),
            shapes={SHAPES: shapes} if shapes is not None else {},
            tables={TABLE: table},
        )
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            sdata.write(str(temporary))
            if target.exists():
                shutil.rmtree(target)
            os.replace(temporary, target)
        finally:
            shutil.rmtree(temporary, ignore_errors=True)
    return target, adata.n_obs
