"""Settings of ``histobatch segment`` for one slide (tiling, workers, outputs), and the default
tile margin: the context the network needs, in µm, on the model's grid."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from histobatch.errors import HistobatchError

#: Context a tile needs on each side, in µm: the network's reach (bench/margin.py: 48 µm left
#: 9 % of the nuclei of a real crop changed by the tiling, 96 µm none).
CONTEXT_UM = 96.0


def default_margin(mpp: float) -> int:
    """Margin in model pixels for :data:`CONTEXT_UM` at ``mpp`` µm/px, a multiple of 32.

    Examples
    --------
    >>> default_margin(0.5), default_margin(0.25)
    (192, 384)
    """
    return int(math.ceil(CONTEXT_UM / mpp / 32) * 32)


@dataclass
class SegmentSettings:
    """Knobs of ``histobatch segment`` (defaults suit a 40x model on CPU or one GPU).

    Attributes
    ----------
    tile_size
        Largest number of pixels per side fed to the network (model grid), margin included; the
        grid shrinks tiles so that they share the slide evenly (:meth:`TileGrid.fitted`).
    margin
        Context on each side of a tile's core; must exceed the largest nucleus radius plus the
        network's effective context. Cores are at most ``tile_size - 2 * margin``. ``None``:
        :data:`CONTEXT_UM` on the model's grid (:func:`default_margin`: 192 px at 20x, 384 at
        40x).
    batch_size
        Tiles per forward pass.
    readers
        Threads reading and resampling tiles ahead of the model.
    post_workers
        Threads post-processing finished tiles while the model runs.
    mpp
        µm/px overriding (or supplying) the slide metadata.
    overwrite
        Recompute slides that are already finished.
    csv
        Also write ``nuclei.csv``.
    all_tiles
        Run every tile, not only those with tissue (small images, TMA cores, evaluation crops
        that are tissue edge to edge).
    max_memory_gb
        Soft limit on the process's resident memory: above it, no new tiles are read until the
        tiles in flight are post-processed and spilled to disk.
    geojson
        Also write ``nuclei.geojson`` (QuPath detections, level-0 pixels).
    report
        Write ``report.html`` (overview, crops, charts, warnings) for the slide.
    stain_norm, stain_target
        Normalise every tile's stain to the target image with TIAToolbox (``macenko``,
        ``vahadane``, ``ruifrok`` or ``reinhard``); see :mod:`histobatch.stain`.
    progress
        Show a progress bar per slide.
    """

    tile_size: int = 2048
    margin: int | None = None
    batch_size: int = 1
    readers: int = 2
    post_workers: int = 1
    mpp: float | None = None
    overwrite: bool = False
    csv: bool = False
    all_tiles: bool = False
    max_memory_gb: float | None = None
    geojson: bool = False
    report: bool = True
    stain_norm: str | None = None
    stain_target: str | None = None
    progress: bool = True

    def for_model(self, config) -> SegmentSettings:
        """These settings with the margin resolved for a model (``None``: the model's context,
        :func:`default_margin`)."""
        if self.margin is not None:
            return self
        return replace(self, margin=default_margin(config.mpp))

    def __post_init__(self) -> None:
        if self.margin is not None and (self.margin < 0 or self.tile_size - 2 * self.margin < 32):
            raise HistobatchError(
                f"--tile-size {self.tile_size} leaves no core with --margin {self.margin}; "
                "the core (tile size - 2 x margin) must be at least 32 pixels"
            )
        if self.tile_size % 32:
            raise HistobatchError(f"--tile-size must be a multiple of 32, got {self.tile_size}")
        if self.batch_size < 1:
            raise HistobatchError("--batch-size must be at least 1")
        if self.max_memory_gb is not None and self.max_memory_gb <= 0:
            raise HistobatchError(f"--max-memory must be positive (GB), got {self.max_memory_gb}")
        if (self.stain_norm is None) != (self.stain_target is None):
            raise HistobatchError("--stain-norm and --stain-target go together; give both")
        if self.readers < 1 or self.post_workers < 1:
            raise HistobatchError("--readers and --post-workers must be at least 1")
        if self.mpp is not None:
            from histobatch.slide import MPP_RANGE

            low, high = MPP_RANGE
            if not low <= self.mpp <= high:
                raise HistobatchError(
                    f"--mpp {self.mpp:g} is outside the plausible range {low}-{high} µm/px; "
                    "pass the slide's level-0 µm/px (e.g. 0.25 for 40x, 0.5 for 20x)"
                )
