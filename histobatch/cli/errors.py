"""Turn user-input errors into one-line messages and exit status 2."""

from __future__ import annotations

import functools
import logging

import click

from histobatch.errors import HistobatchError

logger = logging.getLogger(__name__)


def report_errors(command):
    """Decorator: print ``histobatch: error: <message>`` instead of a traceback (unless -v)."""

    @functools.wraps(command)
    def wrapper(ctx: click.Context, *args, **kwargs):
        try:
            return command(ctx, *args, **kwargs)
        except HistobatchError as exc:
            if ctx.obj and ctx.obj.get("verbose"):
                logger.exception("error")
            raise click.ClickException(str(exc)) from None

    return wrapper
