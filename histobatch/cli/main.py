"""The ``histobatch`` command group."""

from __future__ import annotations

import logging
import sys

import click

from histobatch import __version__


def configure_logging(verbose: int, quiet: bool) -> None:
    """Send log records to stderr; -v for debug details."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S"))
    root = logging.getLogger("histobatch")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (keeps ``--help`` instant)."""

    _commands = {
        "aggregate": ("histobatch.cli.aggregate", "aggregate"),
        "evaluate": ("histobatch.cli.evaluate", "evaluate"),
        "export": ("histobatch.cli.export", "export"),
        "info": ("histobatch.cli.info", "info"),
        "model": ("histobatch.cli.model", "model"),
        "segment": ("histobatch.cli.segment", "segment"),
        "train": ("histobatch.cli.train", "train"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self._commands:
            return None
        import importlib

        module_name, attribute = self._commands[name]
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="histobatch")
@click.option("-v", "--verbose", count=True, help="More detail; full tracebacks on errors.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """Nucleus segmentation and classification for H&E whole-slide images."""
    configure_logging(verbose, quiet)
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


def main() -> None:  # pragma: no cover - entry point
    cli()
