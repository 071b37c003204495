"""One slide, end to end: read → tissue → tiles → model → instances → table, masks, summary.

Outputs go to ``OUT/<slide id>/`` (a public contract, see the README): ``nuclei.parquet``,
``masks.ome.zarr``, ``summary.json``, ``overview.png`` (and ``nuclei.csv`` on request). They are
built in ``OUT/.<slide id>.partial/`` and renamed into place when complete, so a folder with a
``summary.json`` is always a finished slide; an interrupted slide resumes from its finished tiles.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from histobatch import __version__
from histobatch.errors import HistobatchError
from histobatch.stats import SUMMARY_NAME, type_statistics, write_json_atomic

logger = logging.getLogger(__name__)

TABLE_NAME = "nuclei.parquet"
MASKS_NAME = "masks.ome.zarr"
OVERVIEW_NAME = "overview.png"
FINGERPRINT_NAME = "run.json"
#: A tile is run when its core, grown by this much, touches tissue: one tissue-mask pixel
#: (8 µm) plus the largest nucleus radius, so that nuclei on the tissue's edge keep their owner
#: without running the model on cores that only a wide margin brings near tissue.
TISSUE_PAD_UM = 24.0


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
        network's effective context. Cores are at most ``tile_size - 2 * margin``.
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
    margin: int = 192
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

    def __post_init__(self) -> None:
        if self.margin < 0 or self.tile_size - 2 * self.margin < 32:
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


def slide_id_of(path: str | Path) -> str:
    """Output folder name of a slide: its file name without the format suffix(es)."""
    name = Path(path).name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def check_slide_id(slide_id: str) -> str:
    """Refuse slide ids that are not a plain, visible folder name."""
    if not slide_id or slide_id.startswith(".") or any(c in slide_id for c in "/\\\0"):
        raise HistobatchError(
            f"slide id {slide_id!r} is not a plain folder name; use letters, digits, '-', '_'"
        )
    return slide_id


def is_finished(folder: Path) -> bool:
    """A slide folder is finished when its summary exists (written last, then renamed)."""
    return (folder / SUMMARY_NAME).is_file()


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
        A :class:`histobatch.inference.Predictor`.
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
    tiles_dir = work / "tiles"
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
        outputs = _assemble(work, tiles, grid, space, config, settings)
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
    from histobatch.writers.geojson import GEOJSON_NAME, write_geojson

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


def _run_tiles(space, tiles, predictor, settings, tiles_dir, slide_id, total) -> dict[str, float]:
    """Read, predict and post-process tiles; each finished tile is spilled to ``tiles_dir``.

    Returns
    -------
    dict
        Where the time went, in seconds: ``read_wait_s`` (the model waiting for pixels),
        ``model_s`` (forward passes), ``post_wait_s`` (the model waiting for post-processing to
        catch up) and ``post_s`` (post-processing and spilling, summed over its threads; it
        overlaps the model).
    """
    import threading

    from tqdm import tqdm

    from histobatch.inference import read_ahead
    from histobatch.memory import rss_bytes
    from histobatch.stitch import owned_nuclei, save_tile

    spent = {"read_wait_s": 0.0, "model_s": 0.0, "post_wait_s": 0.0, "post_s": 0.0}
    if not tiles:
        return {}
    tiles_dir.mkdir(parents=True, exist_ok=True)
    post_settings = predictor.model.config.postprocess
    image_size = (space.width, space.height)
    post_lock = threading.Lock()

    def finish(tile, maps):
        started = time.perf_counter()
        nuclei = owned_nuclei(tile, maps, post_settings, image_size)
        save_tile(nuclei, tiles_dir, tile.key)
        with post_lock:
            spent["post_s"] += time.perf_counter() - started
        return nuclei.count

    def read(tile):
        return space.read(*tile.read_box)

    bar = tqdm(
        total=total,
        initial=total - len(tiles),
        desc=slide_id,
        unit="tile",
        disable=not settings.progress,
        leave=False,
    )

    def drain(keep: int, found: int) -> int:
        """Wait until at most ``keep`` tiles are being post-processed; return the nuclei count."""
        started = time.perf_counter()
        while len(in_flight) > keep:
            found += in_flight.popleft().result()
            bar.update(1)
            bar.set_postfix(nuclei=found)
        spent["post_wait_s"] += time.perf_counter() - started
        return found

    in_flight: deque = deque()
    found = 0
    limit = settings.max_memory_gb * 1e9 if settings.max_memory_gb else None
    warned = False
    with ThreadPoolExecutor(max_workers=settings.post_workers, thread_name_prefix="post") as pool:
        batches = read_ahead(tiles, read, settings.batch_size, settings.readers)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            spent["read_wait_s"] += time.perf_counter() - started
            if batch is None:
                break
            batch_tiles, pixels = batch
            started = time.perf_counter()
            maps = predictor(pixels)
            spent["model_s"] += time.perf_counter() - started
            for tile, tile_maps in zip(batch_tiles, maps, strict=True):
                in_flight.append(pool.submit(finish, tile, tile_maps))
            del maps, pixels
            keep = 2 * settings.batch_size
            if limit is not None and rss_bytes() > limit:
                keep = 0  # backpressure: spill everything in flight before reading more
                if not warned:
                    logger.warning(
                        "%s: resident memory %.2f GB is above --max-memory %.2f GB; "
                        "post-processing every batch before reading the next (slower)",
                        slide_id,
                        rss_bytes() / 1e9,
                        limit / 1e9,
                    )
                    warned = True
            found = drain(keep, found)
        found = drain(0, found)
    bar.close()
    return spent


def _assemble(work: Path, tiles, grid, space, config, settings) -> dict[str, np.ndarray]:
    """Write the table and the label pyramids from the spilled tiles; return columns for stats."""
    from histobatch.stitch import global_offsets, load_tile
    from histobatch.writers.ome_zarr import LabelPyramidWriter
    from histobatch.writers.table import NucleusTableWriter, parquet_to_csv

    tiles_dir = work / "tiles"
    by_index = {t.index: t for t in tiles}
    mpp = config.mpp
    counts = {}
    for tile in tiles:
        with np.load(tiles_dir / f"{tile.key}.npz") as data:
            counts[tile.index] = len(data["m_cx"])
    offsets = global_offsets(counts, grid.rows * grid.cols)

    masks = LabelPyramidWriter(
        work / MASKS_NAME,
        (space.height, space.width),
        grid.core,
        mpp,
        config.class_names,
        config.class_colors,
    )
    # Where nuclei of two tiles overlap, the first in tile order keeps the pixels; a nucleus left
    # with no pixel at all is a duplicate seen by two tiles and is dropped from the table too, so
    # the table's ids are exactly the mask's ids.
    painted_ids = np.zeros(sum(counts.values()) + 1, bool)
    cache: dict[int, Any] = {}
    core = grid.core
    chunks = sorted(
        {
            (t.row + dr, t.col + dc)
            for t in tiles
            for dr in (-1, 0, 1)
            for dc in (-1, 0, 1)
            if 0 <= t.row + dr < grid.rows and 0 <= t.col + dc < grid.cols
        }
    )
    for row, col in chunks:
        for index in [i for i in cache if by_index[i].row < row - 1]:
            del cache[index]
        y, x = row * core, col * core
        h, w = min(core, space.height - y), min(core, space.width - x)
        instances = np.zeros((h, w), np.uint32)
        classes = np.zeros((h, w), np.uint8)
        painted = False
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                r, c = row + dr, col + dc
                index = r * grid.cols + c
                if not (0 <= r < grid.rows and 0 <= c < grid.cols) or index not in by_index:
                    continue
                if index not in cache:
                    cache[index] = load_tile(tiles_dir / f"{by_index[index].key}.npz")
                painted |= _paint(instances, classes, x, y, cache[index], offsets[index])
        if painted:
            masks.write_chunk(y, x, instances, classes)
            painted_ids[instances[instances > 0]] = True
    masks.build_pyramid()

    collected: dict[str, list] = {"x": [], "y": [], "type_id": [], "area_um2": []}
    writer = NucleusTableWriter(work / TABLE_NAME, config.class_names)
    try:
        for tile in tiles:
            nuclei = load_tile(tiles_dir / f"{tile.key}.npz", labels=False)
            if nuclei.count == 0:
                continue
            ids = offsets[tile.index] + np.arange(1, nuclei.count + 1)
            keep = painted_ids[ids]
            table = {k: v[keep] for k, v in nuclei.table.items()}
            x0, y0 = space.to_level0(table["cx"], table["cy"])
            columns = {
                "id": ids[keep],
                "x": x0,
                "y": y0,
                "x_um": x0 * space.slide.mpp,
                "y_um": y0 * space.slide.mpp,
                "area_um2": table["area"] * mpp**2,
                "perimeter_um": table["perimeter"] * mpp,
                "eccentricity": table["eccentricity"],
                "solidity": table["solidity"],
                "type_id": table["type_id"],
                "type_prob": table["type_prob"],
            }
            writer.write(columns)
            for key in collected:
                collected[key].append(np.asarray(columns[key]))
    finally:
        writer.close()
    if settings.csv:
        parquet_to_csv(work / TABLE_NAME, work / "nuclei.csv")

    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in collected.items()}


def _paint(instances, classes, x, y, nuclei, offset) -> bool:
    """Paint a tile's owned nuclei into the chunk at ``(x, y)``; return True if any pixel."""
    labels = nuclei.labels
    if labels.size == 0:
        return False
    h, w = instances.shape
    x0, y0 = max(x, nuclei.offset_x), max(y, nuclei.offset_y)
    x1 = min(x + w, nuclei.offset_x + labels.shape[1])
    y1 = min(y + h, nuclei.offset_y + labels.shape[0])
    if x1 <= x0 or y1 <= y0:
        return False
    part = labels[
        y0 - nuclei.offset_y : y1 - nuclei.offset_y, x0 - nuclei.offset_x : x1 - nuclei.offset_x
    ]
    target = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    free = (part > 0) & (instances[target] == 0)
    if not free.any():
        return False
    type_lut = np.concatenate([[0], nuclei.table["type_id"]]).astype(np.uint8)
    instances[target][free] = part[free].astype(np.uint32) + np.uint32(offset)
    classes[target][free] = type_lut[part[free]]
    return True
