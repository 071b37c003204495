"""``python -m histobatch``."""

from histobatch.cli.main import cli

cli()
