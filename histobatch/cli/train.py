"""``histobatch train``."""

from __future__ import annotations

import sys

import click

from histobatch.cli.errors import report_errors
from histobatch.cli.options import device_option
from histobatch.train.augment import STRENGTHS


@click.command()
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="YAML training config (see examples/train_consep.yaml).",
)
@click.option("--out", default=None, help="Run folder (overrides the config).")
@click.option("--init", default=None, help="none, imagenet (needs a model hub) or a model folder.")
@click.option(
    "--epochs-scale",
    type=float,
    default=None,
    help="Multiply every stage's epochs (e.g. 0.1 for a quick check).",
)
@click.option(
    "--stages",
    "only_stages",
    default=None,
    help="Comma-separated stage names to run, e.g. 'finetune' to train without pre-training.",
)
@click.option("--augment", type=click.Choice(list(STRENGTHS)), default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--seed", type=int, default=None)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=None)
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
@click.option("--resume", is_flag=True, help="Continue from the run folder's checkpoint.")
@click.option(
    "--export",
    "export_only",
    is_flag=True,
    help="Write the model folder from the last checkpoint without training further.",
)
@device_option
@click.option("--no-progress", is_flag=True, help="No progress bar (also off when not a terminal).")
@click.pass_context
@report_errors
def train(
    ctx,
    config_path,
    out,
    init,
    epochs_scale,
    only_stages,
    augment,
    batch_size,
    seed,
    precision,
    threads,
    resume,
    export_only,
    device,
    no_progress,
) -> None:
    """Train a nucleus model with the transfer-learning recipe and write its report."""
    from histobatch.train.recipe import load_train_config
    from histobatch.train.recipe import train as run_training

    config = load_train_config(
        config_path,
        out=out,
        init=init,
        augment=augment,
        batch_size=batch_size,
        seed=seed,
        precision=precision,
        threads=threads,
        device=device,
    )
    if only_stages:
        from histobatch.errors import HistobatchError

        wanted = [name.strip() for name in only_stages.split(",") if name.strip()]
        unknown = set(wanted) - {stage.name for stage in config.stages}
        if unknown:
            raise HistobatchError(
                f"--stages: no stage named {', '.join(sorted(unknown))} in this config "
                f"(it has {', '.join(stage.name for stage in config.stages)})",
                config_path,
            )
        config.stages = [stage for stage in config.stages if stage.name in wanted]
    if epochs_scale:
        for stage in config.stages:
            stage.epochs = max(1, round(stage.epochs * epochs_scale))
    progress = not no_progress and sys.stderr.isatty()
    model_dir = run_training(config, resume=resume, progress=progress, export_only=export_only)
    click.echo(f"model: {model_dir}")
