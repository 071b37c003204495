"""``histobatch info``."""

from __future__ import annotations

import json

import click

from histobatch.cli.errors import report_errors


@click.command()
@click.argument("slides", nargs=-1, required=True)
@click.option("--mpp", type=float, default=None, help="µm/px overriding the metadata.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per slide instead of text.")
@click.pass_context
@report_errors
def info(ctx, slides, mpp, as_json) -> None:
    """Show format, pyramid levels, µm/px, objective and associated images of SLIDES.

    A quick check before a long run; exits with status 1 if any slide cannot be opened.
    """
    from histobatch.errors import HistobatchError
    from histobatch.info import format_info, slide_info

    failed = 0
    for path in slides:
        try:
            described = slide_info(path, mpp)
        except HistobatchError as exc:
            click.echo(f"histobatch: error: {exc}", err=True)
            failed += 1
            continue
        click.echo(json.dumps(described) if as_json else format_info(described))
    if failed:
        ctx.exit(1)
