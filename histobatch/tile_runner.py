"""Tiles → model → instances, spilled: the tile-running step of :mod:`histobatch.pipeline`.

Reader threads read and resample the next tiles ahead of the model (:func:`histobatch.inference.
read_ahead`), the model runs one batch at a time, and post-processing threads turn each tile's maps
into the nuclei it owns and spill them to ``tiles/<key>.npz`` (:mod:`histobatch.stitch`), so that
memory holds only the tiles in flight. :mod:`histobatch.assemble` then builds the slide's outputs
from the spilled tiles; :mod:`histobatch.distributed` runs this same loop on Dask workers.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from histobatch.inference import Predictor
    from histobatch.resample import ModelSpace
    from histobatch.stain import StainNormalizedSpace
    from histobatch.tiling import Tile

logger = logging.getLogger(__name__)


class TileRunSettings(Protocol):
    """What :func:`run_tiles` reads of a :class:`histobatch.pipeline.SegmentSettings`."""

    batch_size: int
    readers: int
    post_workers: int
    max_memory_gb: float | None
    progress: bool


def run_tiles(
    space: ModelSpace | StainNormalizedSpace,
    tiles: list[Tile],
    predictor: Predictor,
    settings: TileRunSettings,
    tiles_dir: Path,
    slide_id: str,
    total: int,
) -> dict[str, float]:
    """Read, predict and post-process tiles; each finished tile is spilled to ``tiles_dir``.

    Parameters
    ----------
    space
        The slide on the model grid (stain-normalised or not): where tiles are read.
    tiles
        The tiles to compute (those not already spilled).
    predictor
        A :class:`histobatch.inference.Predictor`.
    settings
        Batch size, threads, memory limit and progress bar (a ``SegmentSettings``).
    tiles_dir
        Where each tile's nuclei are spilled as ``<key>.npz``.
    slide_id
        Name for the progress bar and log messages.
    total
        Tiles of the slide, finished ones included (for the progress bar).

    Returns
    -------
    dict
        Where the time went, in seconds: ``read_wait_s`` (the model waiting for pixels),
        ``model_s`` (forward passes), ``post_wait_s`` (the model waiting for post-processing to
        catch up) and ``post_s`` (post-processing and spilling, summed over its threads; it
        overlaps the model). Empty when there are no tiles.
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
