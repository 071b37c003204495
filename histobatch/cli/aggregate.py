"""``histobatch aggregate``."""

from __future__ import annotations

import click

from histobatch.cli.errors import report_errors


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.pass_context
@report_errors
def aggregate(ctx, out) -> None:
    """Build the cohort table and plot of a segment output folder OUT.

    Writes OUT/cohort.csv and OUT/cohort.parquet (one row per slide: status, tissue area, nucleus
    counts, fractions, densities and mean areas per type; failed or unfinished slides listed with
    their reason) and OUT/cohort.png (type composition and density per slide).
    """
    from histobatch.aggregate import aggregate as build

    cohort = build(out)
    click.echo(
        f"{cohort.finished} finished, {cohort.failed} failed or unfinished slide(s) -> "
        f"{cohort.table}, {cohort.parquet.name}, {cohort.plot.name}",
        err=True,
    )
