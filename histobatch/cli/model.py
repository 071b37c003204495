"""``histobatch model``: portable copies of a model (ONNX, TorchScript)."""

from __future__ import annotations

import click

from histobatch.cli.errors import report_errors
from histobatch.cli.options import model_option


@click.group()
def model() -> None:
    """Work with model folders (the packaged default or one written by 'histobatch train')."""


@model.command(name="export")
@model_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["onnx", "torchscript"]),
    default=None,
    help="Default: from the suffix of -o (.onnx; .pt or .ts for TorchScript).",
)
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output file.")
@click.pass_context
@report_errors
def export_command(ctx, model_path, fmt, out) -> None:
    """Write the network as ONNX or TorchScript, with config.json inside the file.

    Input: float32 (batch, 3, height, width), RGB / 255 normalised with the config's mean and std;
    batch, height and width are free (height and width multiples of 2**encoder_depth x
    pixel_shuffle). Output: the raw maps (nuclear-pixel logit, separation maps, type logits).
    ONNX keeps the config in its metadata (histobatch.config); TorchScript as the extra file
    config.json. TorchScript is deprecated by PyTorch; prefer ONNX.
    """
    from pathlib import Path

    from histobatch.export_model import export_model, format_of
    from histobatch.model import load_model

    fmt = format_of(out, fmt)
    loaded = load_model(model_path, device="cpu")
    path = export_model(loaded, out, fmt)
    size = Path(path).stat().st_size / 1e6
    click.echo(
        f"{loaded.config.name} {loaded.config.version} ({fmt}, {size:.1f} MB) -> {path}", err=True
    )
