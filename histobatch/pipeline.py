"""One slide, end to end: read → tissue → tiles → model → instances → table, masks, summary.

Outputs go to ``OUT/<slide id>/`` (a public contract, see the README): ``nuclei.parquet``,
``masks.ome.zarr``, ``summary.json``, ``overview.png`` (and ``nuclei.csv`` on request). They are
built in ``OUT/.<slide id>.partial/`` and renamed into place when complete, so a folder with a
``summary.json`` is always a finished slide; an interrupted slide resumes from its finished tiles.

This module runs the steps in order under the slide's lock and publishes the result; the heavy
steps are modules of their own: :mod:`histobatch.tile_runner` (tiles → model → spilled nuclei),
:mod:`histobatch.assemble` (spilled tiles → table and masks), with the file names in
:mod:`histobatch.layout` and the knobs in :mod:`histobatch.settings`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from histobatch import __version__
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
from histobatch.settings import SegmentSettings
from histobatch.stats import type_statistics, write_json_atomic
from histobatch.tile_runner import run_tiles as _run_tiles  # also re-exported for older callers

logger = logging.getLogger(__name__)

#: A tile is run when its core, grown by this much, touches tissue: one tissue-mask pixel
#: (8 µm) plus the largest nucleus radius, so that nuclei on the tissue's edge keep their owner
#: without running the model on cores that only a wide margin brings near tissue.
TISSUE_PAD_UM = 24.0


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
