"""Options shared by several subcommands."""

from __future__ import annotations

import click

device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (CUDA when present), cpu, cuda or cuda:N.",
)
precision_option = click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
    default="auto",
    show_default=True,
    help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32.",
)
model_option = click.option(
    "--model",
    "model_path",
    default="default",
    show_default=True,
    help="'default' (the packaged model) or a model folder written by 'histobatch train'.",
)
