"""The same slide through TIAToolbox's nucleus instance segmentation engine, same network.

    /work/tia-venv/bin/python bench/tiatoolbox_engine.py --slide PATH [--device cpu]
    /work/tia-venv/bin/python bench/tiatoolbox_engine.py --region 0 0 1024 1024   # quick check
    /work/tia-venv/bin/python bench/tiatoolbox_engine.py --profile tia.prof      # + cProfile

Runs in the virtual environment that holds TIAToolbox (it pins torch and numpy versions that
histobatch's own environment does not use) with histobatch installed there too. To compare the
*engines* (tiling, reading, stitching, instance merging across tiles, writing) rather than models,
TIAToolbox runs histobatch's own network: :func:`build_tia_model` wraps it in a TIAToolbox
``ModelABC`` whose ``infer_batch`` applies histobatch's normalisation, precision and map conversion
(:func:`histobatch.inference.output_to_maps`) and whose ``postproc`` calls
:func:`histobatch.postprocess.instances_from_maps`, so both engines do the same work per pixel.
The weights are histobatch's packaged default ones (``--model``), or random (``--random-weights``).

The engine is :class:`tiatoolbox.models.engine.multi_task_segmentor.MultiTaskSegmentor` (what the
deprecated ``NucleusInstanceSegmentor`` now is) in WSI mode (``patch_mode=False``): it reads
``--tile-size`` px patches at the model's µm/px and keeps their central ``tile-size - 2 * margin``
px (histobatch's tile core) with a stride of one core, histobatch's own tile grid (cores from the
slide's origin, margin of context around each); it stitches the head outputs into slide-sized
maps, post-processes those maps in tiles of ``--post-tile`` px (floored to a multiple of the
core), re-runs the post-processing on strips of ``2 * margin`` px around tile borders to merge the
nuclei cut there, and writes one AnnotationStore (SQLite ``.db``) of nucleus polygons, its natural
WSI output (``--output-type zarr`` writes the instance arrays instead).

Wall time runs from building the engine (the network already loaded) to the output written: no
Python start-up, imports or weight loading. The breakdown comes from wall-clock timers around the
engine's stages (``breakdown_s``); ``--profile`` also runs the engine under cProfile and reports
the cumulative time of the same stages as cProfile sees them (main thread only) and its top
functions. The JSON result is the last line on stdout (and ``--json PATH``).
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import json
import os
import pstats
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

#: Task name the engine files the nuclei under (the name HoVerNet uses in TIAToolbox).
TASK = "nuclei_segmentation"


class StageTimer:
    """Thread-safe sums of wall seconds and call counts per named stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.stage = "setup"
        self._lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        """Add ``seconds`` to ``name`` and count one call."""
        with self._lock:
            self.seconds[name] += seconds
            self.calls[name] += 1

    @contextmanager
    def time(self, name: str) -> Iterator[None]:
        """Time the enclosed block under ``name``."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def wrap(self, function: Callable, name: str, stage: bool = False) -> Callable:
        """``function`` timed under ``name``; with ``stage``, also the current stage meanwhile."""

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            previous = self.stage
            if stage:
                self.stage = name
            try:
                with self.time(name):
                    return function(*args, **kwargs)
            finally:
                self.stage = previous

        return timed


def build_tia_model(
    nucleus_model: Any, margin: int, device: str, precision: str, timer: StageTimer
) -> Any:
    """Wrap a histobatch network as a TIAToolbox nucleus instance segmentation model.

    Parameters
    ----------
    nucleus_model
        A :class:`histobatch.model.NucleusModel`.
    margin
        Pixels cropped from every side of the network output: the model returns the central
        ``patch_input_shape - 2 * margin`` pixels, TIAToolbox's ``patch_output_shape``.
    device
        Torch device the engine runs on (histobatch's Predictor runs the network there).
    precision
        ``auto|fp32|bf16|fp16``, as histobatch's ``--precision``.
    timer
        Receives ``forward`` (``infer_batch``), ``watershed`` and ``instance_info`` (``postproc``)
        seconds, summed over the threads that call them.

    Returns
    -------
    tiatoolbox.models.models_abc.ModelABC
        The wrapped model (evaluation mode, channels-last, on ``device``).
    """
    import cv2
    import torch
    from scipy import ndimage as ndi
    from tiatoolbox.models.models_abc import ModelABC

    from histobatch.inference import Predictor
    from histobatch.postprocess import instances_from_maps

    config = nucleus_model.config

    class HistobatchNucleusModel(ModelABC):
        """histobatch's U-Net with TIAToolbox's model interface (three heads: np, distance, tp)."""

        def __init__(self) -> None:
            super().__init__()
            # histobatch's own Predictor (normalisation, precision, map conversion), so that both
            # engines run exactly the same forward pass.
            self.predictor = Predictor(nucleus_model, device, precision)
            self.network = self.predictor.network
            self.config = config
            self.crop = margin
            self.timer = timer
            names = {i: name for i, name in enumerate(config.class_names)}
            self.class_dict = {TASK: names}
            self.tasks = [TASK]

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            """Raw ``(B, 1 + S + K, H, W)`` network output for normalised NCHW images."""
            return self.network(images)

        @staticmethod
        def infer_batch(
            model: torch.nn.Module, batch_data: np.ndarray | torch.Tensor, *, device: str
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """Head outputs for a batch of ``(B, H, W, 3)`` RGB patches (uint8 or float).

            Returns
            -------
            tuple of numpy.ndarray
                NHWC float32 maps of the central ``H - 2 * crop`` pixels: nuclear probability
                ``(B, h, w, 1)``, centre distance ``(B, h, w, 1)``, type probabilities
                ``(B, h, w, K)`` (see :func:`histobatch.inference.Predictor`).
            """
            core = getattr(model, "module", model)
            started = time.perf_counter()
            maps = core.predictor(np.asarray(batch_data))
            if core.crop:
                maps = maps[:, :, core.crop : -core.crop, core.crop : -core.crop]
            maps = np.ascontiguousarray(maps.transpose(0, 2, 3, 1))
            core.timer.add("forward", time.perf_counter() - started)
            return maps[..., :1], maps[..., 1:2], maps[..., 2:]

        def postproc(
            self, raw_maps: list[Any], offset: tuple[int, int] = (0, 0)
        ) -> tuple[dict[str, Any]]:
            """Nucleus instances of a map region, in the form TIAToolbox's engine merges.

            Parameters
            ----------
            raw_maps
                ``[np (H, W, 1), distance (H, W, 1), tp (H, W, K)]`` (numpy or dask).
            offset
                ``(x, y)`` added to boxes, centroids and contours.

            Returns
            -------
            tuple of dict
                One task: ``predictions`` (int32 instance map), ``info_dict`` of per-nucleus
                arrays (``box`` x0, y0, x1, y1; ``centroid`` x, y; ``contours`` padded with the
                int32 minimum; ``type``; ``prob``) and ``seg_type`` ``"instance"``.
            """
            started = time.perf_counter()
            np_map, distance, tp_map = (np.asarray(m, dtype=np.float32) for m in raw_maps)
            found = instances_from_maps(
                np_map[..., 0], distance[..., 0], np.moveaxis(tp_map, -1, 0), config.postprocess
            )
            self.timer.add("watershed", time.perf_counter() - started)
            started = time.perf_counter()
            info = instance_info(found, offset, cv2, ndi)
            self.timer.add("instance_info", time.perf_counter() - started)
            result = {
                "task_type": TASK,
                "predictions": found.labels,
                "info_dict": info,
                "seg_type": "instance",
            }
            return (result,)

    return HistobatchNucleusModel()


def instance_info(found: Any, offset: tuple[int, int], cv2: Any, ndi: Any) -> dict[str, np.ndarray]:
    """Per-nucleus box, centroid, outline, type and type probability of a label map.

    Parameters
    ----------
    found
        :class:`histobatch.postprocess.TileInstances`.
    offset
        ``(x, y)`` added to every coordinate.
    cv2, ndi
        The ``cv2`` and ``scipy.ndimage`` modules (imported by the caller).

    Returns
    -------
    dict
        Arrays with one row per nucleus whose outline has at least three points (the engine's
        polygons need three; HoVerNet drops the others the same way).
    """
    shift = np.asarray(offset, np.int64)
    boxes, centroids, outlines, types, probs = [], [], [], [], []
    for index, window in enumerate(ndi.find_objects(found.labels)):
        if window is None:
            continue
        rows, cols = window
        mask = (found.labels[window] == index + 1).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        outline = max(contours, key=len)[:, 0, :]
        if len(outline) < 3:
            continue
        corner = np.array([cols.start, rows.start]) + shift
        moments = cv2.moments(mask, binaryImage=True)
        centre = np.array([moments["m10"], moments["m01"]]) / moments["m00"]
        boxes.append(np.concatenate([corner, np.array([cols.stop, rows.stop]) + shift]))
        centroids.append(centre + corner)
        outlines.append((outline + corner).astype(np.int32))
        types.append(int(found.types[index]))
        probs.append(float(found.type_probs[index]))
    if not boxes:
        empty = np.empty(0, np.int8)
        return {key: empty.copy() for key in ("box", "centroid", "contours", "prob", "type")}
    longest = max(len(o) for o in outlines)
    padded = np.full((len(outlines), longest, 2), np.iinfo(np.int32).min, np.int32)
    for row, outline in enumerate(outlines):
        padded[row, : len(outline)] = outline
    return {
        "box": np.stack(boxes).astype(np.int64),
        "centroid": np.stack(centroids),
        "contours": padded,
        "prob": np.asarray(probs, np.float64),
        "type": np.asarray(types, np.int64),
    }


def crop_region(
    slide: Path, region: list[int], folder: Path, mpp: float | None = None
) -> tuple[Path, float]:
    """Write a level-0 region ``x y width height`` of ``slide`` as PNG; return it and its µm/px
    (``mpp`` where given, else the slide's)."""
    import cv2
    from tiatoolbox.wsicore.wsireader import WSIReader

    reader = WSIReader.open(slide, mpp=(mpp, mpp) if mpp else None)
    x, y, width, height = region
    pixels = reader.read_rect((x, y), (width, height), resolution=0, units="level")
    path = folder / f"{slide.name.split('.')[0]}-region.png"
    cv2.imwrite(str(path), cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    return path, float(reader.info.mpp[0])


def sqlite_shim() -> bool:
    """Let TIAToolbox's ``SQLiteStore`` start where Python's sqlite3 cannot load extensions.

    ``SQLiteStore.compile_options`` calls ``enable_load_extension(True)`` only to read
    ``pragma compile_options``; Python builds without ``--enable-loadable-sqlite-extensions`` (the
    pyenv one here) lack that method, so every AnnotationStore fails to open. The replacement reads
    the same pragma without it. Returns whether the shim was needed.
    """
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return False
    from tiatoolbox.annotation.storage import SQLiteStore

    def compile_options() -> list[str]:
        with sqlite3.connect(":memory:") as connection:
            rows = connection.execute("pragma compile_options").fetchall()
        return [option for (option,) in rows]

    SQLiteStore.compile_options = staticmethod(compile_options)
    return True


def count_nuclei(output: Path) -> int:
    """Nuclei in an engine output: annotations of a ``.db`` store or rows of a zarr's boxes."""
    if output.suffix == ".db":
        from tiatoolbox.annotation import SQLiteStore

        store = SQLiteStore(output)
        try:
            return len(store)
        finally:
            store.close()
    import zarr

    group = zarr.open(str(output), mode="r")
    for key in ("box", f"{TASK}/box"):
        if key in group:
            return int(group[key].shape[0])
    raise ValueError(f"no instance boxes in {output}")


def folder_bytes(path: Path) -> int:
    """Bytes in a file or folder tree."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def instrument(engine: Any, timer: StageTimer) -> Callable[[], None]:
    """Time the engine's stages, patch reads and parallel post-processing; return an undo."""
    from tiatoolbox.models.dataset.dataset_abc import WSIPatchDataset
    from tiatoolbox.models.engine import multi_task_segmentor as mts

    for name in ("get_dataloader", "infer_wsi", "post_process_wsi", "save_predictions"):
        setattr(engine, name, timer.wrap(getattr(engine, name), name, stage=True))
    read = WSIPatchDataset.__getitem__
    dask_bar = mts.tqdm_dask_progress_bar

    def timed_dask(*args: Any, **kwargs: Any) -> Any:
        with timer.time(f"dask_compute:{timer.stage}"):
            return dask_bar(*args, **kwargs)

    WSIPatchDataset.__getitem__ = timer.wrap(read, "read_patch")
    mts.tqdm_dask_progress_bar = timed_dask

    def undo() -> None:
        WSIPatchDataset.__getitem__ = read
        mts.tqdm_dask_progress_bar = dask_bar

    return undo


def breakdown(timer: StageTimer, wall: float, engine_init: float) -> dict[str, float]:
    """Split the wall time into the engine's top-level stages (exclusive seconds).

    ``reading`` is patch reading (and TIAToolbox's preprocessing) in this process; with
    ``--num-workers`` it happens in DataLoader processes and shows under ``stitching`` as waiting.
    ``postprocessing`` is the parallel per-tile post-processing (wall), ``merging`` the rest of
    ``post_process_wsi`` (de-duplicating nuclei across tile borders, building the instance table).
    ``other`` is mostly the ``gc.collect()`` the engine runs after each slide.
    """
    s = timer.seconds
    post_parallel = s.get("dask_compute:post_process_wsi", 0.0)
    if not post_parallel:  # the whole map fitted in one post-processing tile
        post_parallel = s.get("watershed", 0.0) + s.get("instance_info", 0.0)
    stages = {
        "engine_setup": engine_init,
        "tissue_mask_and_patch_grid": s.get("get_dataloader", 0.0),
        "reading": s.get("read_patch", 0.0),
        "model_forward": s.get("forward", 0.0),
        "stitching": s.get("infer_wsi", 0.0) - s.get("read_patch", 0.0) - s.get("forward", 0.0),
        "postprocessing": post_parallel,
        "merging": s.get("post_process_wsi", 0.0) - post_parallel,
        "writing": s.get("save_predictions", 0.0),
    }
    stages["other"] = wall - sum(stages.values())
    return {k: round(v, 3) for k, v in stages.items()}


def profile_summary(profile: cProfile.Profile, top: int = 15) -> dict[str, Any]:
    """Cumulative seconds of the engine stages as cProfile saw them, and its top functions."""
    stats = pstats.Stats(profile)
    wanted = {
        "get_dataloader": "tissue_mask_and_patch_grid",
        "__getitem__": "reading",
        "infer_batch": "model_forward",
        "infer_wsi": "inference_and_stitching",
        "post_process_wsi": "postprocessing_and_merging",
        "save_predictions": "writing",
    }
    stages: dict[str, float] = {}
    rows = []
    for (filename, line, function), (_, calls, _, cumulative, _) in stats.stats.items():
        if "tiatoolbox" in filename or function == "infer_batch":
            label = wanted.get(function)
            if label and (function != "__getitem__" or "dataset_abc" in filename):
                stages[label] = max(stages.get(label, 0.0), cumulative)
        if function == "<built-in method gc.collect>":
            stages["gc_collect"] = stages.get("gc_collect", 0.0) + cumulative
        rows.append((cumulative, calls, f"{Path(filename).name}:{line}({function})"))
    rows.sort(reverse=True)
    return {
        "stages_cumulative_s": {k: round(v, 3) for k, v in stages.items()},
        "top_cumulative": [
            {"function": name, "calls": calls, "cumulative_s": round(cum, 3)}
            for cum, calls, name in rows[:top]
        ],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    data = Path(os.environ.get("HISTOBATCH_DATA", "/work/shared/data"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--slide", type=Path, default=data / "slides" / "cmu-1-small-region.svs", help="Slide."
    )
    parser.add_argument(
        "--region",
        type=int,
        nargs=4,
        metavar=("X", "Y", "W", "H"),
        help="Only this level-0 box of the slide (cropped to a PNG first; for quick checks).",
    )
    parser.add_argument("--model", default="default", help="histobatch model folder or default.")
    parser.add_argument(
        "--random-weights", action="store_true", help="Random weights instead of the model's."
    )
    parser.add_argument("--mpp", type=float, help="µm/px to run at (default: the model's).")
    parser.add_argument(
        "--slide-mpp", type=float, help="µm/px of level 0 when the file has none (PNG, TIFF)."
    )
    parser.add_argument("--tile-size", type=int, default=1280, help="Network input px, margin in.")
    parser.add_argument("--margin", type=int, default=192, help="Context px on each side.")
    parser.add_argument(
        "--post-tile",
        type=int,
        default=2048,
        help="Post-processing tile px (TIAToolbox tile_shape, floored to a multiple of the core).",
    )
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N.")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16|fp16 (histobatch's).")
    parser.add_argument("--threads", type=int, help="Torch CPU threads (default: usable cores).")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="DataLoader processes (TIAToolbox's default 0 reads in the main process).",
    )
    parser.add_argument(
        "--output-type", choices=["annotationstore", "zarr"], default="annotationstore"
    )
    parser.add_argument(
        "--torch-compile",
        default="disable",
        help="TIAToolbox rcParam torch_compile_mode (it compiles only on V100/A100/H100-class "
        "GPUs; histobatch does not compile).",
    )
    parser.add_argument("--no-tissue-mask", action="store_true", help="Run every patch.")
    parser.add_argument("--profile", type=Path, help="Also run under cProfile; write stats here.")
    parser.add_argument("--keep", type=Path, help="Copy the engine's output folder here.")
    parser.add_argument("--json", type=Path, help="Also write the result here.")
    parser.add_argument("--verbose", action="store_true", help="TIAToolbox progress and logs.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and print (and return) the JSON result."""
    args = parse_args(argv)
    core = args.tile_size - 2 * args.margin
    if core < 32 or args.margin < 0:
        raise SystemExit("--tile-size minus twice --margin must be at least 32 px")
    if args.post_tile < core:
        raise SystemExit(f"--post-tile must be at least the tile core ({core} px)")

    import logging

    import tiatoolbox
    import torch
    from tiatoolbox import rcParam
    from tiatoolbox.models.engine.io_config import IOInstanceSegmentorConfig
    from tiatoolbox.models.engine.multi_task_segmentor import MultiTaskSegmentor

    from histobatch.device import configure_threads, resolve_device
    from histobatch.model import load_model, new_model

    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    device = resolve_device(args.device)
    threads = configure_threads(args.threads)
    rcParam["torch_compile_mode"] = args.torch_compile
    shimmed = sqlite_shim()

    work = Path(tempfile.mkdtemp(prefix="tia-engine-"))
    slide, slide_mpp = args.slide, args.slide_mpp
    if args.region:
        slide, slide_mpp = crop_region(args.slide, args.region, work, slide_mpp)
    run_kwargs = {"wsireader_kwargs": {"mpp": (slide_mpp, slide_mpp)}} if slide_mpp else {}

    started = time.perf_counter()
    nucleus_model = load_model(args.model, "cpu")
    if args.random_weights:
        torch.manual_seed(0)
        nucleus_model = new_model(nucleus_model.config)
    mpp = args.mpp or nucleus_model.config.mpp
    timer = StageTimer()
    tia_model = build_tia_model(nucleus_model, args.margin, device, args.precision, timer)
    model_load = time.perf_counter() - started

    resolution = {"units": "mpp", "resolution": mpp}
    ioconfig = IOInstanceSegmentorConfig(
        input_resolutions=[resolution],
        output_resolutions=[dict(resolution) for _ in range(3)],
        patch_input_shape=(args.tile_size, args.tile_size),
        patch_output_shape=(core, core),
        stride_shape=(core, core),
        save_resolution=dict(resolution),
        margin=args.margin,
        tile_shape=(args.post_tile, args.post_tile),
    )
    out_dir = work / "out"
    profile = cProfile.Profile() if args.profile else None

    started = time.perf_counter()
    if profile:
        profile.enable()
    engine = MultiTaskSegmentor(
        model=tia_model,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=device,
        verbose=args.verbose,
    )
    engine_init = time.perf_counter() - started
    undo = instrument(engine, timer)
    try:
        outputs = engine.run(
            [slide],
            patch_mode=False,
            ioconfig=ioconfig,
            save_dir=out_dir,
            overwrite=True,
            output_type=args.output_type,
            auto_get_mask=not args.no_tissue_mask,
            **run_kwargs,
        )
    finally:
        if profile:
            profile.disable()
        undo()
    wall = time.perf_counter() - started

    output = next(iter(outputs.values()))
    if isinstance(output, list | tuple):
        output = output[0]
    output = Path(output)
    nuclei = count_nuclei(output)
    dataset = engine.dataloader.dataset
    s = timer.seconds
    result: dict[str, Any] = {
        "engine": "tiatoolbox",
        "version": tiatoolbox.__version__,
        "wall_s": round(wall, 2),
        "nuclei": nuclei,
        "tiles": len(dataset),
        "breakdown_s": breakdown(timer, wall, engine_init),
        "threads_summed_s": {
            "forward": round(s.get("forward", 0.0), 3),
            "watershed": round(s.get("watershed", 0.0), 3),
            "instance_info": round(s.get("instance_info", 0.0), 3),
        },
        "calls": {
            "infer_batch": timer.calls.get("forward", 0),
            "postproc": timer.calls.get("watershed", 0),
            "patch_reads": timer.calls.get("read_patch", 0),
        },
        "settings": {
            "slide": str(args.slide),
            "region": args.region,
            "slide_px": list(dataset.reader_info.slide_dimensions),
            "mpp": mpp,
            "device": device,
            "precision": str(tia_model.predictor.dtype).replace("torch.", "")
            if tia_model.predictor.dtype
            else "fp32",
            "threads": threads,
            "batch_size": args.batch_size,
            "num_workers": args.num_workers,
            "tile_size": args.tile_size,
            "margin": args.margin,
            "patch_input_shape": [args.tile_size] * 2,
            "patch_output_shape": [core] * 2,
            "stride_shape": [core] * 2,
            "post_tile_shape": [(args.post_tile // core) * core] * 2,
            "instance_merge_margin": args.margin,
            "tissue_mask": not args.no_tissue_mask,
            "torch_compile": args.torch_compile,
            "weights": "random (seed 0)" if args.random_weights else f"histobatch {args.model}",
            "model": f"{nucleus_model.config.name} {nucleus_model.config.version}",
            "engine_class": "MultiTaskSegmentor (patch_mode=False)",
            "output_type": args.output_type,
            "output_file": output.name,
            "output_bytes": folder_bytes(output),
            "sqlite_shim": shimmed,
            "model_load_s": round(model_load, 2),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    if profile:
        profile.dump_stats(str(args.profile))
        result["cprofile"] = profile_summary(profile)
    if args.keep:
        shutil.copytree(out_dir, args.keep, dirs_exist_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.flush()
    print(text)
    return result


if __name__ == "__main__":
    main()
