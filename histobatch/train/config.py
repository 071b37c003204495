"""Training configuration: the datasets, stages and settings of a run, read from a YAML file
(see ``examples/train_mixed.yaml``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from histobatch.errors import HistobatchError


@dataclass
class DataSpec:
    """One dataset of a stage (see :func:`histobatch.train.datasets.read_dataset` and
    :mod:`histobatch.train.sources`).

    Attributes
    ----------
    include, exclude
        Globs (one or a list) on image names to keep or leave out.
    name
        Source name (default: folder name and include pattern); datasets with one name are one
        source.
    weight
        Share of the stage's crops drawn from this source (relative; default by area).
    role
        ``train`` (split by tile/patient into training and validation), ``val`` (validation
        only: e.g. held-out organs) or ``all`` (training only).
    val_fraction
        This source's validation share (default: the run's ``val_fraction``).
    """

    layout: str
    path: str
    class_map: str = "none"
    scale: float = 1.0
    include: str | list[str] | None = None
    exclude: str | list[str] | None = None
    name: str | None = None
    weight: float | None = None
    role: str = "train"
    val_fraction: float | None = None


@dataclass
class StageSpec:
    """One training stage.

    Attributes
    ----------
    freeze
        ``"none"`` or ``"encoder"`` (heads-only transfer step).
    reset_head
        Re-initialise the output layer at the start of the stage (a new head on a pre-trained net).
    samples_per_epoch
        Crops per epoch; default: one per 256×256 of training images.
    type_weights
        Class weights of the type cross-entropy: ``"none"``, ``"balanced"`` (square-root inverse
        pixel frequency of the stage's training data, see
        :func:`histobatch.train.losses.balanced_type_weights`) or one number per class.
    schedule_epochs
        Length of the stage's one-cycle learning-rate schedule in epochs (default: ``epochs``).
        Larger than ``epochs``, the stage stops part-way through its schedule (a later stage
        can then anneal), exactly as a run of the longer schedule stopped there.
    """

    name: str
    data: list[DataSpec]
    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-4
    freeze: str = "none"
    reset_head: bool = False
    samples_per_epoch: int | None = None
    type_weights: str | list[float] = "none"
    schedule_epochs: int | None = None


@dataclass
class TrainConfig:
    """A whole training run.

    Attributes
    ----------
    contact_weight
        Extra weight of the separation loss where touching nuclei meet (0: none); see
        :class:`histobatch.train.data.CropDataset`.
    separation_weight
        Factor of the separation loss in the total: its MSE is small beside the nuclear-pixel
        and type losses, so at 1 the head learns a blurred map that merges touching nuclei.
    np_type_power
        Weights the nuclear-pixel BCE of typed crops by the stage's type weights to this power
        (0: unweighted): rare types' nuclei (CoNSeP's "other", spindle) are the ones missed.
    workers
        Processes that make the augmented crops (0: the training process itself, as on a 2-core
        CPU). A GPU needs several to be kept busy. Runs are reproducible for a given number of
        workers: worker ``k`` of an epoch seeds its augmentation from the epoch and ``k``.
    pixel_shuffle
        Run the network on a grid this many times coarser than ``mpp`` (see
        :class:`histobatch.model.ModelConfig`): 2 gives 40x maps for the compute of 20x.
    refine_channels
        With ``pixel_shuffle`` > 1: width of the full-resolution refinement (see
        :class:`histobatch.model.ModelConfig`); 0 = none.
    val_every
        Validate every this many epochs (and after each stage's last epoch).
    val_margin
        Validation images are mirrored by this many pixels on every side before the forward
        pass, as ``segment`` mirrors a plain image into its tile margins.
    """

    out: str = "runs/model"
    name: str = "histobatch-nuclei"
    seed: int = 0
    init: str = "none"
    encoder: str = "resnet18"
    architecture: str = "Unet"
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    separation: str = "hv"
    mpp: float = 0.25
    class_names: list[str] | None = None
    crop_size: int = 256
    batch_size: int = 8
    augment: str = "default"
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    workers: int = 0
    val_fraction: float = 0.15
    contact_weight: float = 0.0
    separation_weight: float = 1.0
    np_type_power: float = 0.0
    tune_postprocess: bool = True
    pixel_shuffle: int = 1
    refine_channels: int = 0
    val_every: int = 1
    val_margin: int = 0
    stages: list[StageSpec] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a parsed YAML mapping, with clear errors for unknown keys."""
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise HistobatchError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        stages = []
        for raw in data.pop("stages", []):
            raw = dict(raw)
            raw["data"] = [DataSpec(**d) for d in raw.get("data", [])]
            stages.append(StageSpec(**raw))
        config = cls(**data, stages=stages)
        if not config.stages:
            raise HistobatchError("the training config has no stages")
        return config


def load_train_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """Read a YAML training config; ``overrides`` that are not ``None`` replace its values."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HistobatchError("training config not found", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HistobatchError(f"invalid YAML: {exc}", path) from None
    # The run folder, the init weights and dataset paths written in the file are relative to the
    # file; an ``out`` or ``init`` given on the command line is relative to the working directory.
    if "out" in data:
        out = Path(os.path.expandvars(str(data["out"])))
        data["out"] = str(out if out.is_absolute() else (path.parent / out).resolve())
    init = str(data.get("init", "none"))
    if init not in ("none", "imagenet"):
        init_path = Path(os.path.expandvars(init))
        data["init"] = str(
            init_path if init_path.is_absolute() else (path.parent / init_path).resolve()
        )
    data.update({k: v for k, v in overrides.items() if v is not None})
    # Dataset paths are relative to the config file.
    for stage in data.get("stages", []):
        for spec in stage.get("data", []):
            candidate = Path(os.path.expandvars(str(spec["path"])))
            if not candidate.is_absolute():
                candidate = (path.parent / candidate).resolve()
            spec["path"] = str(candidate)
    try:
        return TrainConfig.from_dict(data)
    except TypeError as exc:
        raise HistobatchError(f"invalid training config: {exc}", path) from None
