"""Spread the tiles of every slide over a Dask distributed cluster.

The process that runs ``histobatch segment`` keeps the parts that touch a whole slide (tissue
detection, the tile plan, the lock, stitching and writing); the tiles themselves, where the time
goes, are cut into chunks and computed by the workers, which spill them into the slide's partial
folder exactly as a local run does. So many workers help on one big slide, results are identical to
a local run (every tile is computed independently), and an interrupted run resumes the same way.
Workers must see the output folder (a shared file system on a cluster).

Clusters: ``--scheduler tcp://HOST:PORT`` (an existing one), ``--cluster local:N`` (N worker
processes on this machine) or ``--cluster slurm[:N]`` (N SLURM jobs of one worker each, started by
dask-jobqueue; queue, account and sizes come from Dask's ``jobqueue.slurm`` configuration). With a
GPU device every worker advertises one ``GPU`` resource and every chunk asks for one.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from histobatch.errors import HistobatchError

logger = logging.getLogger(__name__)


#: How long ``--cluster slurm`` waits for its first worker before giving up.
WORKER_WAIT_S = 900


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to compute tiles: the model, device, precision, segment settings,
    threads and runtime (``torch`` or ``onnx``)."""

    model_path: str
    device: str
    precision: str
    settings: Any  # histobatch.pipeline.SegmentSettings
    threads: int | None
    runtime: str = "torch"  # or "onnx" (histobatch.runtime)


def local_worker_count(cluster: str | None) -> int | None:
    """Workers of a ``local[:N]`` cluster spec (``None`` for other kinds)."""
    if not cluster:
        return None
    kind, _, count = cluster.partition(":")
    if kind != "local":
        return None
    return int(count) if count.isdigit() else os.cpu_count() or 1


def start_client(scheduler: str | None, cluster: str | None, device: str):
    """Connect to ``scheduler`` or start the cluster named by ``cluster``; return the client.

    Raises
    ------
    HistobatchError
        For an unreachable scheduler, an unknown cluster kind or a missing extra.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise HistobatchError(
            "--scheduler/--cluster need Dask distributed: pip install 'histobatch[workflow]'"
        ) from None
    if scheduler and cluster:
        raise HistobatchError("give either --scheduler or --cluster, not both")
    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise HistobatchError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    kind, _, count = cluster.partition(":")
    if count and not count.isdigit():
        raise HistobatchError(f"--cluster {cluster}: the worker count must be a number")
    if kind == "local":
        from histobatch.device import resolve_device

        gpu = resolve_device(device) != "cpu"  # this machine: "auto" means what it finds here
        workers = local_worker_count(cluster)
        local = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"GPU": 1} if gpu else None,
            silence_logs=logging.WARNING,
        )
        return Client(local)
    if kind == "slurm":
        try:
            from dask_jobqueue import SLURMCluster
        except ImportError:
            raise HistobatchError(
                "--cluster slurm needs dask-jobqueue: pip install 'histobatch[workflow]'"
            ) from None
        extra = ["--resources", "GPU=1"] if gpu else []
        directives = ["--gres=gpu:1"] if gpu else []
        slurm = SLURMCluster(processes=1, worker_extra_args=extra, job_extra_directives=directives)
        slurm.scale(jobs=int(count) if count else 1)
        return Client(slurm)
    raise HistobatchError(f"unknown --cluster {cluster!r}; use local:N or slurm[:N]")


def slurm_cluster(gpu: bool):
    """A dask-jobqueue ``SLURMCluster`` of one worker per job (and one GPU per job if ``gpu``).

    Queue, account, cores, memory and walltime come from Dask's ``jobqueue.slurm`` configuration.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise HistobatchError(
            "--cluster slurm needs dask-jobqueue: pip install 'histobatch[workflow]'"
        ) from None
    return SLURMCluster(
        processes=1,
        worker_extra_args=["--resources", "GPU=1"] if gpu else [],
        job_extra_directives=["--gres=gpu:1"] if gpu else [],
    )


class DaskTileRunner:
    """Compute a slide's pending tiles on the workers of ``client`` (see the module notes).

    Parameters
    ----------
    client
        A ``distributed.Client``.
    job
        Model, device and settings for the workers.
    tiles_per_task
        Tiles per task; default: enough tasks for about four per worker.
    """

    def __init__(self, client, job: WorkerJob, tiles_per_task: int | None = None) -> None:
        self.client = client
        self.job = job
        self.tiles_per_task = tiles_per_task
        self._count_workers()

    def _count_workers(self) -> None:
        """Workers come and go (SLURM jobs start late): recount before every slide."""
        workers = self.client.scheduler_info().get("workers", {})
        self.n_workers = max(len(workers), 1)
        self.gpu = any("GPU" in w.get("resources", {}) for w in workers.values())
        self.device_label = f"dask ({self.n_workers} workers, {self.job.device})"

    def __call__(self, path, space, tiles, tiles_dir, slide_id: str, total: int) -> None:
        from distributed import as_completed
        from tqdm import tqdm

        if not tiles:
            return
        self._count_workers()
        size = self.tiles_per_task or max(
            self.job.settings.batch_size, math.ceil(len(tiles) / (4 * self.n_workers))
        )
        chunks = [tiles[i : i + size] for i in range(0, len(tiles), size)]
        resources = {"GPU": 1} if self.gpu and self.job.device != "cpu" else None
        normalizer = getattr(space, "normalizer", None)  # a stain-normalised slide
        futures = [
            self.client.submit(
                run_tile_chunk,
                str(Path(path).resolve()),
                chunk,
                str(Path(tiles_dir).resolve()),
                self.job,
                normalizer,
                pure=False,
                resources=resources,
            )
            for chunk in chunks
        ]
        bar = tqdm(
            total=total,
            initial=total - len(tiles),
            desc=slide_id,
            unit="tile",
            disable=not self.job.settings.progress,
            leave=False,
        )
        try:
            for future in as_completed(futures):
                bar.update(future.result())  # re-raises a worker's error here
        finally:
            for future in futures:
                future.cancel()
            bar.close()


_WORKER_STATE: dict[str, Any] = {}
#: One chunk at a time per worker process: a chunk already uses every core (torch threads, tile
#: readers, post-processing threads) and the model and open slide are shared state.
_WORKER_LOCK = threading.Lock()


def run_tile_chunk(path: str, tiles: list, tiles_dir: str, job: WorkerJob, normalizer=None) -> int:
    """On a worker: compute ``tiles`` of the slide at ``path`` and spill them to ``tiles_dir``.

    The model and the open slide are kept between calls in the worker process.
    """
    from histobatch.tile_runner import run_tiles

    with _WORKER_LOCK:
        predictor = _worker_predictor(job)
        space = _worker_space(path, job, predictor.model.config.mpp)
        if normalizer is not None:
            from histobatch.stain import StainNormalizedSpace

            space = StainNormalizedSpace(space, normalizer)
        settings = replace(job.settings, progress=False)
        name = Path(path).name
        run_tiles(space, tiles, predictor, settings, Path(tiles_dir), name, len(tiles))
    return len(tiles)


def _worker_predictor(job: WorkerJob):
    key = (job.model_path, job.device, job.precision, job.runtime)
    if _WORKER_STATE.get("predictor_key") != key:
        from histobatch.device import configure_threads
        from histobatch.model import load_model
        from histobatch.runtime import make_predictor, runtime_device

        device = runtime_device(job.runtime, job.device)
        if device == "cpu":
            configure_threads(job.threads)
        model = load_model(job.model_path, device)
        _WORKER_STATE["predictor"] = make_predictor(
            model, device, job.precision, job.runtime, job.threads
        )
        _WORKER_STATE["predictor_key"] = key
    return _WORKER_STATE["predictor"]


def _worker_space(path: str, job: WorkerJob, model_mpp: float):
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, job.settings.mpp, model_mpp)
    if _WORKER_STATE.get("slide_key") != key:
        from histobatch.resample import ModelSpace
        from histobatch.slide import open_slide

        previous = _WORKER_STATE.pop("slide", None)
        if previous is not None:
            previous.close()
        slide = open_slide(path, mpp=job.settings.mpp)
        _WORKER_STATE.update(slide=slide, slide_key=key, space=ModelSpace(slide, model_mpp))
    return _WORKER_STATE["space"]
