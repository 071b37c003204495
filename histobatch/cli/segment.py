"""``histobatch segment``."""

from __future__ import annotations

import logging
import sys

import click

from histobatch.cli.errors import report_errors
from histobatch.cli.options import device_option, model_option, precision_option


@click.command()
@click.argument("slides", nargs=-1, required=True)
@click.option("-o", "--out", default="results", show_default=True, help="Output folder.")
@model_option
@device_option
@click.option(
    "--mpp",
    type=float,
    default=None,
    help="µm/px of level 0, overriding the metadata (needed when a slide has none).",
)
@precision_option
@click.option(
    "--runtime",
    type=click.Choice(["torch", "onnx"]),
    default="torch",
    show_default=True,
    help="What runs the network: torch, or onnx (onnxruntime on the CPU, fp32; the model is "
    "exported once into a cache; needs pip install 'histobatch[onnx]').",
)
@click.option(
    "--tile-size",
    type=int,
    default=2048,
    show_default=True,
    help="Largest network input in model pixels (margin included); the grid shrinks tiles to "
    "share the slide evenly. Memory grows with it (peak 3.1 GB at 2048 on CPU, batch 1).",
)
@click.option(
    "--margin",
    type=int,
    default=None,
    help="Context pixels on each side of a tile's core (default: 96 µm on the model's grid, "
    "384 px for the default 40x model). Smaller margins cost nuclei at tile seams (default "
    "model, real crop: 91 % of nuclei identical across tilings at 48 µm).",
)
@click.option("--batch-size", type=int, default=1, show_default=True)
@click.option(
    "--readers",
    type=int,
    default=2,
    show_default=True,
    help="Threads reading tiles ahead of the model.",
)
@click.option(
    "--post-workers",
    type=int,
    default=1,
    show_default=True,
    help="Threads post-processing tiles while the model runs.",
)
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--overwrite", is_flag=True, help="Redo slides that are already finished.")
@click.option("--csv", is_flag=True, help="Also write nuclei.csv next to nuclei.parquet.")
@click.option("--no-report", is_flag=True, help="Do not write report.html per slide.")
@click.option(
    "--stain-norm",
    type=click.Choice(["macenko", "vahadane", "ruifrok", "reinhard"], case_sensitive=False),
    default=None,
    help="Normalise the stain to --stain-target with TIAToolbox (optional extra).",
)
@click.option(
    "--stain-target",
    type=click.Path(dir_okay=False),
    default=None,
    help="Reference H&E image (PNG/JPEG/TIFF) for --stain-norm.",
)
@click.option(
    "--geojson", is_flag=True, help="Also write nuclei.geojson (QuPath detections with classes)."
)
@click.option(
    "--all-tiles",
    is_flag=True,
    help="Run every tile, not only tissue (small images, TMA cores, crops full of tissue).",
)
@click.option(
    "--max-memory",
    type=float,
    default=None,
    help="Soft limit on resident memory in GB: above it, tiles are spilled before more are read.",
)
@click.option(
    "--slide-id",
    default=None,
    help="Output folder name for a single slide (default: the file name without suffix).",
)
@click.option(
    "--no-cohort",
    is_flag=True,
    help="Do not write OUT/cohort.csv and OUT/failures.json (workflows: histobatch aggregate).",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Compute tiles on a running Dask cluster (tcp://HOST:PORT); needs a shared OUT.",
)
@click.option(
    "--cluster",
    default=None,
    metavar="local:N|slurm[:N]",
    help="Start a Dask cluster for the tiles: N local worker processes or N SLURM jobs.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
@click.pass_context
@report_errors
def segment(
    ctx,
    slides,
    out,
    model_path,
    device,
    mpp,
    precision,
    runtime,
    tile_size,
    margin,
    batch_size,
    readers,
    post_workers,
    threads,
    overwrite,
    csv,
    no_report,
    stain_norm,
    stain_target,
    geojson,
    all_tiles,
    max_memory,
    slide_id,
    no_cohort,
    scheduler,
    cluster,
    no_progress,
) -> None:
    """Segment and classify nuclei in SLIDES (files, globs or folders) into OUT/<slide>/.

    Writes nuclei.parquet, masks.ome.zarr, summary.json and overview.png per slide and
    OUT/cohort.csv over slides. Finished slides are skipped unless --overwrite.
    """
    from histobatch.pipeline import SegmentSettings
    from histobatch.runner import segment_slides

    if scheduler or cluster:  # Dask's own shutdown chatter is not the user's business
        logging.getLogger("distributed").setLevel(logging.ERROR)

    settings = SegmentSettings(
        tile_size=tile_size,
        margin=margin,
        batch_size=batch_size,
        readers=readers,
        post_workers=post_workers,
        mpp=mpp,
        overwrite=overwrite,
        csv=csv,
        geojson=geojson,
        report=not no_report,
        stain_norm=stain_norm,
        stain_target=stain_target,
        all_tiles=all_tiles,
        max_memory_gb=max_memory,
        progress=not no_progress and sys.stderr.isatty(),
    )
    results = segment_slides(
        list(slides),
        out,
        model_path,
        device,
        precision,
        settings,
        threads,
        slide_id=slide_id,
        run_files=not no_cohort,
        scheduler=scheduler,
        cluster=cluster,
        runtime=runtime,
    )
    done = [r for r in results if r.status == "done"]
    skipped = [r for r in results if r.status == "skipped"]
    failed = [r for r in results if r.status == "failed"]
    nuclei = sum(r.nuclei for r in done)
    click.echo(
        f"{len(results)} slide(s): {len(done)} done, {len(skipped)} skipped, "
        f"{len(failed)} failed; {nuclei:,} nuclei; results in {out}/",
        err=True,
    )
    if failed:
        click.echo("failed:", err=True)
        for result in failed:
            click.echo(f"  {result.error}", err=True)
        ctx.exit(1)
