"""``histobatch evaluate``."""

from __future__ import annotations

import math
import sys

import click

from histobatch.cli.errors import report_errors
from histobatch.cli.options import device_option, model_option, precision_option


@click.command()
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Annotated dataset folder, e.g. consep4/test (Images/ + Labels/).",
)
@model_option
@click.option(
    "--out",
    default="evaluation/metrics.json",
    show_default=True,
    help="metrics.json path (figures and per_image.csv go beside it).",
)
@click.option(
    "--layout",
    type=click.Choice(["consep", "monuseg", "instance_png"]),
    default="consep",
    show_default=True,
)
@click.option(
    "--class-map",
    default="identity",
    show_default=True,
    help="consep7to4 for original CoNSeP labels, identity for consep4, none for type-less data.",
)
@click.option(
    "--data-mpp", type=float, default=0.25, show_default=True, help="µm/px of the images."
)
@click.option("--margin", type=int, default=None, help="Tile margin (default: segment's).")
@click.option("--tile-size", type=int, default=None, help="Largest tile (default: segment's).")
@click.option("--batch-size", type=int, default=None, help="Tiles per batch (default: segment's).")
@click.option("--limit", type=int, default=None, help="Only the first N images.")
@click.option(
    "--include",
    multiple=True,
    help="Only images whose name matches this glob (repeatable), e.g. 'TCGA-HE-*'.",
)
@device_option
@precision_option
@click.option("--threads", type=int, default=None, help="torch CPU threads (default: all cores).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
@report_errors
def evaluate(
    ctx,
    data,
    model_path,
    out,
    layout,
    class_map,
    data_mpp,
    margin,
    tile_size,
    batch_size,
    limit,
    include,
    device,
    precision,
    threads,
    no_progress,
) -> None:
    """Score a model on an annotated dataset: Dice, AJI, DQ/SQ/PQ (per image, averaged), F_d and
    F_c per type (centroids paired within 3 µm = 12 px at 40x, pooled), pixel accuracy and IoU.

    Every image is segmented exactly as 'segment IMAGE --mpp DATA_MPP' segments it (same
    tiling, margins, post-processing and stitching), and what that writes is scored.
    """
    from histobatch.device import configure_threads, resolve_device
    from histobatch.evaluate import EvaluateSettings, evaluate_dataset
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    settings = EvaluateSettings(
        layout=layout,
        class_map=class_map,
        data_mpp=data_mpp,
        margin=margin,
        tile_size=tile_size,
        batch_size=batch_size,
        limit=limit,
        include=list(include) or None,
    )
    concrete = resolve_device(device)
    if concrete == "cpu":
        configure_threads(threads)
    model = load_model(model_path, device=concrete)
    predictor = Predictor(model, concrete, precision)
    metrics = evaluate_dataset(
        data, predictor, out, settings, progress=not no_progress and sys.stderr.isatty()
    )

    def fmt(value: float) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"

    line = " ".join(
        f"{k.upper() if k != 'f_d' else 'F_d'} {fmt(metrics[k])}"
        for k in ("dice", "aji", "dq", "sq", "pq", "f_d")
    )
    click.echo(f"{metrics['n_images']} images: {line}")
    if "f_c" in metrics:
        click.echo("F_c " + ", ".join(f"{k} {fmt(v)}" for k, v in metrics["f_c"].items()))
        click.echo(f"pixel accuracy {fmt(metrics['pixel_accuracy'])}, mIoU {fmt(metrics['miou'])}")
