"""``histobatch export``: nucleus polygons for QuPath and for tools that read HoVer-Net JSON, and
the nuclei for scverse (AnnData ``nuclei.h5ad``, SpatialData ``nuclei.spatialdata.zarr``)."""

from __future__ import annotations

import click

from histobatch.cli.errors import report_errors


def _export_command(kind: str, help_text: str):
    @click.command(name=kind, help=help_text)
    @click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
    @click.option("-o", "--out", default=None, help="Output file (one folder only).")
    @click.option("--gzip", "gz", is_flag=True, help="Write a .gz file.")
    @click.pass_context
    @report_errors
    def command(ctx, folders, out, gz) -> None:
        from histobatch.errors import HistobatchError
        from histobatch.writers.geojson import export_slide_folder

        if out and len(folders) > 1:
            raise HistobatchError("-o names one file; export one folder at a time with it")
        for folder in folders:
            path, count = export_slide_folder(folder, kind, out, gz)
            click.echo(f"{count:,} nuclei -> {path}", err=True)

    return command


def _scverse_command(kind: str, help_text: str):
    @click.command(name=kind, help=help_text)
    @click.argument("folders", nargs=-1, required=True, type=click.Path(file_okay=False))
    @click.option("-o", "--out", default=None, help="Output path (one folder only).")
    @click.pass_context
    @report_errors
    def command(ctx, folders, out) -> None:
        from histobatch.errors import HistobatchError

        if kind == "anndata":
            from histobatch.writers.anndata_export import write_anndata as write
        else:
            from histobatch.writers.spatialdata_export import write_spatialdata as write
        if out and len(folders) > 1:
            raise HistobatchError("-o names one output; export one folder at a time with it")
        for folder in folders:
            path, count = write(folder, out)
            click.echo(f"{count:,} nuclei -> {path}", err=True)

    return command


@click.group()
def export() -> None:
    """Export the nuclei of finished slide folders (OUT/<slide>): polygons, AnnData, SpatialData."""


export.add_command(
    _export_command(
        "geojson",
        "QuPath GeoJSON (detections with class, colour and measurements; level-0 pixels) of "
        "FOLDERS, written to FOLDER/nuclei.geojson[.gz]. Import in QuPath with File > Import "
        "objects, or drag the file onto the open slide.",
    )
)
export.add_command(
    _export_command(
        "hovernet",
        "HoVer-Net's JSON layout ({mag, nuc: {id: {bbox, centroid, contour, type, type_prob}}}) "
        "of FOLDERS, written to FOLDER/nuclei.hovernet.json[.gz].",
    )
)
export.add_command(
    _scverse_command(
        "anndata",
        "AnnData for scanpy/squidpy of FOLDERS, written to FOLDER/nuclei.h5ad: one row per "
        "nucleus, obs = the nuclei.parquet columns (type categorical, colours in "
        "uns['type_colors']), obsm['spatial'] = (x_um, y_um) in µm, uns['histobatch'] = the "
        "slide summary. Needs pip install 'histobatch[scverse]'.",
    )
)
export.add_command(
    _scverse_command(
        "spatialdata",
        "SpatialData store of FOLDERS, written to FOLDER/nuclei.spatialdata.zarr: labels "
        "'instances' and 'classes' (from masks.ome.zarr), shapes 'nuclei' (polygons) and table "
        "'table' annotating 'instances', all in µm (coordinate system 'global'). Needs "
        "pip install 'histobatch[scverse]'.",
    )
)
