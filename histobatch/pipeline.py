"""One slide, end to end: read → tissue → tiles → model → instances → table, masks, summary.

Outputs go to ``OUT/<slide id>/`` (a public contract, see the README): ``nuclei.parquet``,
``masks.ome.zarr``, ``summary.json``, ``overview.png`` (and ``nuclei.csv`` on request). They are
built in ``OUT/.<slide id>.partial/`` and renamed into place when complete, so a folder with a
``summary.json`` is always a finished slide; an interrupted slide resumes from its finished tiles.

This module runs the steps in order under the slide's lock and publishes the result; the heavy
steps are modules of their own: :mod:`histobatch.tile_runner` (tiles → model → spilled nuclei),
:mod:`histobatch.assemble` (spilled tiles → table and masks), with the file names in
:mod:`histobatch.layout`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from histobatch import __version__
from histobatch.errors import HistobatchError
from histobatch.layout import (
    FINGERPRINT_NAME,
    GEOJSON_NAME,
    MASKS_NAME,
    OVERVIEW_NAME,
    SUMMARY_NAME,
    TABLE_NAME,
    TILES_DIR,
    is_finished,
    slide_id_of,
)
from histobatch.layout import check_slide_id as check_slide_id  # re-exported for older callers
from histobatch.stats import type_statistics, write_json_atomic
from histobatch.tile_runner import run_tiles as _run_tiles  # also re-exported for older callers

logger = logging.getLogger(__name__)

#: A tile is run when its core, grown by this much, touches tissue: one tissue-mask pixel
#: (8 µm) plus the largest nucleus radius, so that nuclei on the tissue's edge keep their owner
#: without running the model on cores that only a wide margin brings near tissue.
TISSUE_PAD_UM = 24.0


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


@dataclass
class SlideResult:
    """What happened to one slide."""

    path: Path
    slide_id: str
    status: str  # "done", "skipped" or "failed"
    out_dir: Path | None = None
    nuclei: int = 0
    runtime_s: float = 0.0
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def segment_slide(
    path: str | Path,
    out_root: str | Path,
    predictor,
    settings: SegmentSettings,
    slide_id: str | None = None,
    run_tiles=None,
):
    """Segment one slide into ``out_root/<slide id>/``.

    Parameters
    ----------
    path
        The slide file.
    out_root
        The run's output folder.
    predictor
        A :class:`histobatch.inference.Predictor` or an ``OnnxPredictor`` (``--runtime onnx``).
    settings
        Tiling and output options.
    slide_id
        Output folder name; default: the file name without its suffix (:func:`slide_id_of`).
    run_tiles
        Who computes the pending tiles: ``run_tiles(path, space, tiles, tiles_dir, slide_id,
        total)`` must leave one spilled file per tile in ``tiles_dir``. Default: this process,
        with ``predictor``; :class:`histobatch.distributed.DaskTileRunner` spreads them over a
        Dask cluster. Its ``device_label`` attribute, if any, is recorded in the summary.

    Returns
    -------
    SlideResult
        ``status`` is ``done`` or ``skipped``; errors propagate as exceptions.
    """
    from histobatch.locking import SlideBusy, SlideLock

    started = time.perf_counter()
    settings = settings.for_model(predictor.model.config)
    path = Path(path)
    out_root = Path(out_root)
    slide_id = slide_id or slide_id_of(path)
    final = out_root / slide_id
    if is_finished(final) and not settings.overwrite:
        logger.info("%s: already finished in %s (use --overwrite to redo)", path.name, final)
        return SlideResult(path, slide_id, "skipped", final)
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        lock = SlideLock(out_root, slide_id).acquire()
    except SlideBusy as busy:
        reason = f"another run is segmenting it ({busy.holder})"
        logger.warning("%s: skipped, %s", path.name, reason)
        return SlideResult(path, slide_id, "skipped", final, error=reason)
    try:
        if is_finished(final) and not settings.overwrite:  # another run finished it meanwhile
            return SlideResult(path, slide_id, "skipped", final)
        return _segment_locked(path, out_root, slide_id, predictor, settings, started, run_tiles)
    finally:
        lock.release()


def run_fingerprint(predictor, settings: SegmentSettings) -> dict[str, Any]:
    """Everything that changes a slide's tiles; a partial slide resumes only if it matches."""
    model = predictor.model
    weights = Path(model.path) / "model.safetensors" if model.path else None
    return {
        "model": model.config.to_dict(),
        "weights_bytes": weights.stat().st_size if weights and weights.exists() else None,
        "tile_size": settings.tile_size,
        "margin": settings.margin,
        "mpp": settings.mpp,
        "all_tiles": settings.all_tiles,
        "stain_norm": settings.stain_norm,
        "stain_target": settings.stain_target,
        "precision": str(predictor.dtype),
        "runtime": getattr(predictor, "runtime", "torch"),
        "histobatch_version": __version__,
    }


def _prepare_work_folder(work: Path, fingerprint: dict[str, Any], overwrite: bool, name: str):
    """Keep a partial slide's finished tiles only when they were made the same way."""
    import json

    stamp = work / FINGERPRINT_NAME
    if work.exists():
        try:
            previous = json.loads(stamp.read_text())
        except (OSError, ValueError):
            previous = None
        if overwrite or previous != json.loads(json.dumps(fingerprint, default=str)):
            why = "--overwrite" if overwrite else "made with other settings or model"
            logger.info("%s: discarding the unfinished earlier run (%s)", name, why)
            shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        write_json_atomic(stamp, fingerprint)


def _segment_locked(
    path: Path, out_root: Path, slide_id: str, predictor, settings, started, run_tiles
):
    """:func:`segment_slide` once the slide's lock is held."""
    from histobatch.resample import ModelSpace
    from histobatch.slide import open_slide
    from histobatch.tiling import TileGrid
    from histobatch.tissue import detect_tissue

    final = out_root / slide_id
    work = out_root / f".{slide_id}.partial"
    if is_finished(work) and not settings.overwrite:  # complete, but killed before the rename
        _publish(work, final)
        return SlideResult(path, slide_id, "done", final)
    tiles_dir = work / TILES_DIR
    timings: dict[str, float] = {}
    config = predictor.model.config
    with open_slide(path, mpp=settings.mpp) as slide:
        space = ModelSpace(slide, config.mpp)
        t0 = time.perf_counter()
        tissue = detect_tissue(slide)
        tissue_mm2 = tissue.area_mm2(slide.mpp)
        from histobatch.report import stain_check

        stain = stain_check(tissue.thumbnail, tissue.mask)
        tile_space = space
        if settings.stain_norm:
            from histobatch.stain import StainNormalizedSpace, slide_normalizer, tissue_pixels

            normalizer = slide_normalizer(settings.stain_norm, settings.stain_target)
            normalizer.fit_source(tissue_pixels(tissue.thumbnail, tissue.mask))
            tile_space = StainNormalizedSpace(space, normalizer)
        grid = TileGrid.fitted(
            space.width,
            space.height,
            settings.tile_size,
            settings.margin,
            multiple=config.size_multiple,
        )
        mask_scale = tissue.downsample * space.scale
        if settings.all_tiles:
            tiles = grid.tiles()
        else:
            pad = math.ceil(TISSUE_PAD_UM / config.mpp)
            tiles = grid.tiles_on_mask(tissue.mask, mask_scale, pad=pad)
        timings["tissue_s"] = time.perf_counter() - t0
        logger.info(
            "%s: %dx%d px at %.3f µm/px (%s) -> model grid %dx%d at %.3f µm/px (level %d); "
            "tissue %.2f mm², %d/%d tiles",
            path.name,
            *slide.dimensions,
            slide.mpp,
            slide.mpp_source,
            space.width,
            space.height,
            config.mpp,
            space.level,
            tissue_mm2,
            len(tiles),
            grid.rows * grid.cols,
        )
        fingerprint = run_fingerprint(predictor, settings)
        _prepare_work_folder(work, fingerprint, settings.overwrite, path.name)
        done = {p.stem for p in tiles_dir.glob("r*_c*.npz")} if tiles_dir.is_dir() else set()
        pending = [t for t in tiles if t.key not in done]
        if done:
            logger.info(
                "%s: resuming, %d of %d tiles already done",
                path.name,
                len(tiles) - len(pending),
                len(tiles),
            )
        t0 = time.perf_counter()
        if run_tiles is None:
            spent = _run_tiles(
                tile_space, pending, predictor, settings, tiles_dir, slide_id, len(tiles)
            )
            timings.update(spent)
        else:
            run_tiles(path, tile_space, pending, tiles_dir, slide_id, len(tiles))
        timings["tiles_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        from histobatch.assemble import assemble_outputs

        outputs = assemble_outputs(work, tiles, grid, space, config, settings.csv)
        timings["assemble_s"] = time.perf_counter() - t0
        if settings.geojson:
            t0 = time.perf_counter()
            _write_geojson(work, space.scale, path.name)
            timings["geojson_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        from histobatch.overview import draw_overview

        thumb, thumb_downsample = slide.thumbnail(2048)
        draw_overview(
            thumb,
            thumb_downsample,
            tissue.mask,
            outputs["x"],
            outputs["y"],
            outputs["type_id"],
            config.class_names,
            config.class_colors,
            work / OVERVIEW_NAME,
        )
        timings["overview_s"] = time.perf_counter() - t0

        n = len(outputs["type_id"])
        runtime = time.perf_counter() - started
        summary: dict[str, Any] = {
            "slide_id": slide_id,
            "slide_path": str(path.resolve()),
            "format": slide.format,
            "dimensions": list(slide.dimensions),
            "mpp": slide.mpp,
            "mpp_source": slide.mpp_source,
            "objective_power": slide.objective_power,
            "model_mpp": config.mpp,
            "read_level": space.level,
            "tissue_area_mm2": tissue_mm2,
            "stain": stain,
            "stain_norm": (
                {"method": settings.stain_norm, "target": settings.stain_target}
                if settings.stain_norm
                else None
            ),
            "nucleus_count": n,
            "nucleus_density_per_mm2": n / tissue_mm2 if tissue_mm2 > 0 else 0.0,
            "types": type_statistics(
                outputs["type_id"], outputs["area_um2"], config.class_names, tissue_mm2
            ),
            "tiles": {
                "with_tissue": len(tiles),
                "grid": [grid.rows, grid.cols],
                "tile_size": grid.tile_size,
                "core": grid.core,
                "margin": settings.margin,
            },
            "model": {
                "name": config.name,
                "version": config.version,
                "path": str(predictor.model.path) if predictor.model.path else None,
            },
            "device": getattr(run_tiles, "device_label", str(predictor.device)),
            "runtime": getattr(predictor, "runtime", "torch"),
            "precision": str(predictor.dtype).replace("torch.", "") if predictor.dtype else "fp32",
            "runtime_s": round(runtime, 2),
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "histobatch_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        shutil.rmtree(tiles_dir, ignore_errors=True)
        (work / FINGERPRINT_NAME).unlink(missing_ok=True)
        write_json_atomic(work / SUMMARY_NAME, summary)
        if settings.report:
            _write_report(work, path.name)

    _publish(work, final)
    logger.info("%s: %d nuclei in %.1f s -> %s", path.name, n, runtime, final)
    return SlideResult(path, slide_id, "done", final, n, runtime, timings=timings)


def _write_geojson(folder: Path, scale: float, name: str) -> None:
    """``nuclei.geojson``; a failure is reported (``histobatch export geojson`` can redo it)."""
    from histobatch.writers.geojson import write_geojson

    try:
        write_geojson(folder / MASKS_NAME, folder / TABLE_NAME, scale, folder / GEOJSON_NAME)
    except Exception as exc:
        logger.warning("%s: nuclei.geojson not written (%s: %s)", name, type(exc).__name__, exc)
        logger.debug("traceback", exc_info=True)


def _write_report(folder: Path, name: str) -> None:
    """``report.html``; a failure here is reported but never costs the slide its results."""
    from histobatch.report import write_slide_report

    try:
        write_slide_report(folder)
    except Exception as exc:
        logger.warning("%s: report.html not written (%s: %s)", name, type(exc).__name__, exc)
        logger.debug("traceback", exc_info=True)


def _publish(work: Path, final: Path) -> None:
    """Move a complete slide folder to its final name (replacing an older result)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
