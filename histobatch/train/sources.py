"""The datasets of a training stage: read each source, split it into training and validation
images by source tile/patient, and give every training image its sampling probability.

A stage may mix sources (e.g. CoNSeP with types, MoNuSeg and TNBC without). Each source keeps its
own class map (declared in the config, never guessed), its own validation images and its share of
the training crops: ``weight`` sets the share of crops drawn from the source (relative to the
stage's other sources, 1 when not given); when no source has a weight, every image is drawn in
proportion to its area, as for a single dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histobatch.errors import HistobatchError
from histobatch.train.datasets import Sample, read_dataset, split_by_group

logger = logging.getLogger(__name__)

#: What a source is used for: ``train`` (split by group into training and validation images),
#: ``val`` (validation only, e.g. held-out organs) or ``all`` (training only, no validation).
ROLES = ("train", "val", "all")


@dataclass
class Source:
    """One dataset of a stage, split.

    Attributes
    ----------
    name
        Shown in logs and in the history's ``val_sources``.
    train, val
        Training and validation images.
    weight
        Share of the stage's training crops (relative), or ``None`` (by area).
    """

    name: str
    train: list[Sample] = field(default_factory=list)
    val: list[Sample] = field(default_factory=list)
    weight: float | None = None


def source_name(spec) -> str:
    """``spec.name``, else the folder name plus the include pattern."""
    if getattr(spec, "name", None):
        return spec.name
    name = Path(spec.path).name
    if not spec.include:
        return name
    include = spec.include if isinstance(spec.include, str) else ",".join(spec.include)
    return f"{name}[{include}]"


def read_sources(specs, val_fraction: float, seed: int) -> list[Source]:
    """Read and split every dataset of a stage (see :class:`histobatch.train.config.DataSpec`).

    Sources that share a name are one source (e.g. CPM-15's 20x and 40x images read with
    different scales).
    """
    by_name: dict[str, Source] = {}
    for spec in specs:
        role = getattr(spec, "role", "train")
        if role not in ROLES:
            raise HistobatchError(
                f"dataset {spec.path}: unknown role {role!r}; use {', '.join(ROLES)}"
            )
        samples = read_dataset(
            spec.layout, spec.path, spec.class_map, spec.scale, spec.include, spec.exclude
        )
        fraction = spec.val_fraction if spec.val_fraction is not None else val_fraction
        if role == "val":
            train, val = [], samples
        elif role == "all":
            train, val = samples, []
        else:
            train, val = split_by_group(samples, fraction, seed)
        name = source_name(spec)
        source = by_name.setdefault(name, Source(name, weight=spec.weight))
        if spec.weight is not None:
            source.weight = spec.weight
        source.train += train
        source.val += val
    sources = list(by_name.values())
    for source in sources:
        logger.info(
            "source %s: %d train / %d val images%s",
            source.name,
            len(source.train),
            len(source.val),
            f", weight {source.weight:g}" if source.weight is not None else "",
        )
    return sources


def sampling_probabilities(sources: list[Source]) -> tuple[list[Sample], np.ndarray]:
    """All training images of the stage and the probability of drawing each for a crop.

    Within a source, images are drawn in proportion to their area. When no source has a weight,
    every image is drawn by its area whatever its source; otherwise each source gets its weight's
    share of the crops, an unweighted source counting as weight 1.

    Examples
    --------
    >>> a = Sample("a", "a", np.zeros((4, 4, 3)), np.zeros((4, 4)), None)
    >>> b = Sample("b", "b", np.zeros((2, 2, 3)), np.zeros((2, 2)), None)
    >>> sampling_probabilities([Source("x", [a]), Source("y", [b])])[1].round(3)
    array([0.8, 0.2])
    >>> sampling_probabilities([Source("x", [a], weight=1), Source("y", [b], weight=3)])[1]
    array([0.25, 0.75])
    """
    sources = [s for s in sources if s.train]
    if not sources:
        return [], np.zeros(0)
    areas = {id(s): np.array([x.inst_map.size for x in s.train], np.float64) for s in sources}
    if any(s.weight is not None and s.weight <= 0 for s in sources):
        raise HistobatchError("dataset weights must be positive")
    if all(s.weight is None for s in sources):
        raw = {id(s): areas[id(s)].sum() for s in sources}
    else:
        raw = {id(s): 1.0 if s.weight is None else float(s.weight) for s in sources}
    total = sum(raw.values())
    share = {key: value / total for key, value in raw.items()}
    samples: list[Sample] = []
    probabilities = []
    for source in sources:
        area = areas[id(source)]
        samples += source.train
        probabilities.append(share[id(source)] * area / area.sum())
    probabilities = np.concatenate(probabilities)
    return samples, probabilities / probabilities.sum()
