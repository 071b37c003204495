"""Many slides: expand the inputs, load the model once, segment each slide, keep going on errors.

One failing slide never stops the batch: it is reported with a one-line reason, listed in
``OUT/failures.json``, and the run ends with a non-zero exit status.
"""

from __future__ import annotations

import errno
import glob
import logging
import os
import tempfile
import time
from pathlib import Path

from histobatch.aggregate import FAILURES_NAME, write_cohort_tables
from histobatch.errors import HistobatchError
from histobatch.layout import check_slide_id, is_finished, slide_id_of
from histobatch.pipeline import SegmentSettings, SlideResult, segment_slide
from histobatch.stats import write_json_atomic

logger = logging.getLogger(__name__)

#: Suffixes taken when a directory is given as input.
SLIDE_SUFFIXES = {
    ".svs",
    ".tif",
    ".tiff",
    ".ndpi",
    ".vms",
    ".vmu",
    ".scn",
    ".mrxs",
    ".svslide",
    ".bif",
    ".dcm",
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
}


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[SlideResult]]:
    """Turn command-line inputs into slide paths; unusable inputs become failed results.

    Globs are expanded (also when the shell did not), directories yield the slide files they hold.
    """
    paths: list[Path] = []
    failures: list[SlideResult] = []
    for item in inputs:
        path = Path(item)
        if any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item))
            if not matches:
                failures.append(_failed(path, "no files match this pattern"))
            paths.extend(Path(m) for m in matches)
        elif path.is_dir() and path.suffix.lower() != ".mrxs":
            found = sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SLIDE_SUFFIXES
            )
            if not found:
                failures.append(
                    _failed(
                        path,
                        f"directory holds no slide files ({', '.join(sorted(SLIDE_SUFFIXES))})",
                    )
                )
            paths.extend(found)
        else:
            paths.append(path)
    unique: list[Path] = []
    seen: dict[str, Path] = {}
    for path in paths:
        slide_id = slide_id_of(path)
        if slide_id in seen:
            if seen[slide_id].resolve() != path.resolve():
                failures.append(
                    _failed(
                        path,
                        f"another input ({seen[slide_id]}) has the same "
                        f"name '{slide_id}'; rename one of them",
                    )
                )
            continue
        seen[slide_id] = path
        unique.append(path)
    return unique, failures


def _failed(path: Path, reason: str) -> SlideResult:
    return SlideResult(path, slide_id_of(path), "failed", error=f"{path}: {reason}")


def segment_slides(
    inputs: list[str],
    out: str | Path,
    model_path: str = "default",
    device: str = "auto",
    precision: str = "auto",
    settings: SegmentSettings | None = None,
    threads: int | None = None,
    slide_id: str | None = None,
    run_files: bool = True,
    scheduler: str | None = None,
    cluster: str | None = None,
    runtime: str = "torch",
) -> list[SlideResult]:
    """Segment every input slide into ``out``; see :func:`histobatch.pipeline.segment_slide`.

    Parameters
    ----------
    slide_id
        Output folder name for a single input slide (workflows with a sample sheet).
    run_files
        Write the run-level ``cohort.csv`` and ``failures.json``; a workflow that runs one job
        per slide turns this off and builds them once with ``histobatch aggregate``.
    scheduler, cluster
        Compute the tiles on a Dask cluster: the address of a running scheduler, or
        ``local:N``/``slurm[:N]`` to start one (see :mod:`histobatch.distributed`).
    runtime
        ``torch`` or ``onnx`` (onnxruntime on the CPU; see :mod:`histobatch.runtime`).

    Raises
    ------
    HistobatchError
        Only for problems that stop every slide (model, device, output folder).
    """
    from histobatch.device import configure_threads, resolve_device
    from histobatch.model import load_model
    from histobatch.runtime import check_runtime, make_predictor, runtime_device

    check_runtime(runtime, device, precision)  # before anything else: one line and stop
    if runtime == "onnx":
        device = "cpu"
    settings = settings or SegmentSettings()
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A name of its own: two runs starting together on one folder must not share the probe.
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise HistobatchError(
            f"output folder is not writable ({exc.strerror}); choose another with -o", out
        ) from None
    paths, results = expand_inputs(inputs)
    for failure in results:
        logger.error("%s", failure.error)
    if slide_id is not None:
        check_slide_id(slide_id)
        if len(inputs) != 1 or len(paths) > 1:
            raise HistobatchError(
                f"--slide-id names one slide, but {len(inputs)} inputs were given"
            )
    if not paths:
        if run_files:
            _write_failures(out, results)
            _refresh_cohort(out)
        return results

    if settings.stain_norm:  # fail fast (TIAToolbox missing, bad target) before any slide
        from histobatch.stain import slide_normalizer

        slide_normalizer(settings.stain_norm, settings.stain_target)
    run_tiles = client = None
    if scheduler or cluster:
        from histobatch.distributed import (
            DaskTileRunner,
            WorkerJob,
            local_worker_count,
            start_client,
        )

        local_workers = local_worker_count(cluster)
        if local_workers and threads is None:  # share this machine's cores, no oversubscription
            threads = max(1, (os.cpu_count() or 1) // local_workers)

        from histobatch.device import autocast_dtype

        model = load_model(model_path, device="cpu")  # here for its config (onnx: the export)
        predictor = make_predictor(model, "cpu", precision, runtime, threads)
        if runtime == "torch":
            # What the workers compute in, for the summary and the resume fingerprint.
            worker_device = "cuda" if device.startswith("cuda") else resolve_device(device)
            predictor.dtype = autocast_dtype(worker_device, precision)
        client = start_client(scheduler, cluster, device)
        shared_model = str(model.path.resolve()) if model.path else model_path
        job = WorkerJob(shared_model, device, precision, settings, threads, runtime)
        run_tiles = DaskTileRunner(client, job)
        logger.info("model %s; tiles on %s", model.config.name, run_tiles.device_label)
    else:
        concrete = runtime_device(runtime, device)
        if concrete == "cpu":
            configure_threads(threads)
        model = load_model(model_path, device=concrete)
        predictor = make_predictor(model, concrete, precision, runtime, threads)
        logger.info(
            "model %s (%s, %.3f µm/px) on %s, %s, %s",
            model.config.name,
            model.config.encoder,
            model.config.mpp,
            concrete,
            str(predictor.dtype).replace("torch.", "") if predictor.dtype else "fp32",
            "onnxruntime" if runtime == "onnx" else "torch",
        )
    try:
        _segment_each(paths, out, predictor, settings, slide_id, run_tiles, run_files, results)
    finally:
        if client is not None:
            client.close()
            if client.cluster is not None:
                client.cluster.close()
    if run_files:
        _write_failures(out, results)
        _refresh_cohort(out)
    return results


def _segment_each(paths, out, predictor, settings, slide_id, run_tiles, run_files, results):
    """Segment ``paths`` one after the other, appending a result per slide to ``results``."""
    for position, path in enumerate(paths, start=1):
        logger.info("[%d/%d] %s", position, len(paths), path)
        started = time.perf_counter()
        try:
            result = segment_slide(path, out, predictor, settings, slide_id, run_tiles)
        except HistobatchError as exc:
            result = SlideResult(path, slide_id_of(path), "failed", error=str(exc))
            logger.error("%s", exc)
        except OSError as exc:
            message = _io_error_message(path, out, exc)
            result = SlideResult(path, slide_id_of(path), "failed", error=message)
            logger.error("%s", message)
            logger.debug("traceback", exc_info=True)
        except Exception as exc:  # keep the batch going; details with -v
            message = f"{path}: unexpected error ({type(exc).__name__}: {exc})"
            result = SlideResult(path, slide_id_of(path), "failed", error=message)
            logger.error("%s", message)
            logger.debug("traceback", exc_info=True)
        result.runtime_s = result.runtime_s or time.perf_counter() - started
        results.append(result)
        if result.status == "done" and run_files:
            _refresh_cohort(out)


def _io_error_message(path: Path, out: Path, exc: OSError) -> str:
    """One line for an operating-system error while segmenting ``path``."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"{path}: no space left on the device holding {out}{where}; free space or choose "
            "another -o, then rerun (finished tiles are kept and reused)"
        )
    return f"{path}: input/output error: {exc.strerror or exc}{where}"


def _write_failures(out: Path, results: list[SlideResult]) -> None:
    """Merge this run's failures into ``OUT/failures.json``.

    Earlier failures stay listed until their slide is retried (by any run) or finished, so a rerun
    of some slides, or a second run sharing the folder, never hides the others' failures.
    """
    import json

    from histobatch.locking import waiting_lock

    path = out / FAILURES_NAME
    tried = {str(r.path) for r in results}
    with waiting_lock(out / ".failures.lock"):
        try:
            earlier = json.loads(path.read_text()) if path.is_file() else []
        except ValueError:
            earlier = []
        failures = [
            f
            for f in earlier
            if f.get("slide") not in tried and not is_finished(out / slide_id_of(f["slide"]))
        ]
        failures += [
            {"slide": str(r.path), "error": r.error} for r in results if r.status == "failed"
        ]
        if failures:
            write_json_atomic(path, failures)
        elif path.exists():
            path.unlink()


def _refresh_cohort(out: Path) -> None:
    """Rewrite ``cohort.csv``; a failure here is logged, never stops the batch."""
    try:
        write_cohort_tables(out, parquet=False)
    except Exception as exc:
        logger.error("%s: cohort.csv not updated (%s: %s)", out, type(exc).__name__, exc)
