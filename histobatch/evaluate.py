"""``histobatch evaluate``: run a model over an annotated dataset exactly as ``segment`` runs it on
a slide, and score it with the field's metrics (see :mod:`histobatch.instance_metrics`).

Each image goes through :func:`histobatch.pipeline.segment_slide` (tiling with margins, batched
inference, post-processing, ownership by centroid, stitching, the OME-Zarr masks and the table),
and the written masks and table are compared with the annotation.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from histobatch.errors import HistobatchError

logger = logging.getLogger(__name__)

#: Centroid pairing radius of the HoVer-Net protocol: 12 px at 40x (0.25 µm/px).
PAIRING_RADIUS_UM = 3.0
METRICS_NAME = "metrics.json"


@dataclass
class EvaluateSettings:
    """How to read the dataset and how to run the model on it.

    Attributes
    ----------
    layout, class_map
        Dataset reader and type mapping (see :mod:`histobatch.train.datasets`).
    data_mpp
        µm/px of the dataset images (CoNSeP: 0.25).
    margin, tile_size, batch_size
        ``segment --margin/--tile-size/--batch-size``; ``None``: segment's defaults, so that
        the scores are those of what ``segment`` writes for the same image.
    limit
        Evaluate only the first N images (quick checks).
    include
        Only images whose name matches one of these globs (e.g. held-out organs).
    """

    layout: str = "consep"
    class_map: str = "identity"
    data_mpp: float = 0.25
    margin: int | None = None
    tile_size: int | None = None
    batch_size: int | None = None
    limit: int | None = None
    include: list[str] | None = None

    def segment_settings(self):
        """The :class:`~histobatch.pipeline.SegmentSettings` every image is segmented with:
        segment's defaults, the dataset's µm/px, and no report or progress bar."""
        from histobatch.pipeline import SegmentSettings

        chosen = {
            key: value
            for key, value in (
                ("tile_size", self.tile_size),
                ("margin", self.margin),
                ("batch_size", self.batch_size),
            )
            if value is not None
        }
        return SegmentSettings(
            **chosen, mpp=self.data_mpp, overwrite=True, report=False, progress=False
        )


def _predicted(folder: Path, shape: tuple[int, int]):
    """Instance and class rasters (resized to ``shape`` if the model grid differs) and the table's
    centroids and types from one segmented image folder."""
    import pandas as pd
    import zarr

    from histobatch.layout import MASKS_NAME, TABLE_NAME

    root = zarr.open_group(str(folder / MASKS_NAME), mode="r")
    instances = np.asarray(root["instances"]["0"][:])
    classes = np.asarray(root["classes"]["0"][:])
    if instances.shape != shape:
        from skimage.transform import resize

        instances = resize(instances, shape, order=0, preserve_range=True, anti_aliasing=False)
        classes = resize(classes, shape, order=0, preserve_range=True, anti_aliasing=False)
        instances = instances.astype(np.uint32)
        classes = classes.astype(np.uint8)
    table = pd.read_parquet(folder / TABLE_NAME, columns=["x", "y", "type_id"])
    xy = table[["x", "y"]].to_numpy(np.float64)
    return instances, classes, xy, table["type_id"].to_numpy(np.int64)


def evaluate_dataset(
    data: str | Path,
    predictor,
    out: str | Path,
    settings: EvaluateSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``predictor`` on the dataset in ``data`` and write the report.

    Parameters
    ----------
    data
        Dataset folder (e.g. ``consep4/test``).
    predictor
        A :class:`histobatch.inference.Predictor`.
    out
        Path of ``metrics.json``; ``confusion.png``, ``confusion_nuclei.png``, ``samples.png`` and
        ``per_image.csv`` are written beside it.
    settings
        Dataset and tiling options.

    Returns
    -------
    dict
        The metrics (also written to ``out``).
    """
    from PIL import Image
    from tqdm import tqdm

    from histobatch.instance_metrics import (
        PointMatches,
        aji,
        dice,
        instance_centroids,
        panoptic_quality,
    )
    from histobatch.metrics import confusion_matrix, pixel_scores
    from histobatch.pipeline import segment_slide
    from histobatch.train.datasets import read_dataset

    settings = settings or EvaluateSettings()
    out = Path(out)
    if out.suffix.lower() != ".json":
        out = out / METRICS_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    config = predictor.model.config
    samples = read_dataset(settings.layout, data, settings.class_map, include=settings.include)
    if settings.limit:
        samples = samples[: settings.limit]
    if not samples:
        raise HistobatchError("no images to evaluate", data)
    typed = all(s.type_map is not None for s in samples)
    n_classes = config.n_classes
    radius_px = PAIRING_RADIUS_UM / settings.data_mpp

    matches = PointMatches()
    confusion = np.zeros((n_classes, n_classes), np.int64)
    per_image: list[dict[str, Any]] = []
    panels = []
    panel_every = max(1, len(samples) // 4)
    segment_settings = settings.segment_settings()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="histobatch-evaluate-"))
    # One log line per image from the pipeline would drown the progress bar.
    pipeline_logger = logging.getLogger("histobatch.pipeline")
    pipeline_level = pipeline_logger.level
    pipeline_logger.setLevel(max(logging.WARNING, pipeline_level))
    try:
        for index, sample in enumerate(
            tqdm(samples, desc="evaluate", unit="image", disable=not progress)
        ):
            image_path = work / f"{sample.name}.png"
            Image.fromarray(sample.image).save(image_path, compress_level=1)
            result = segment_slide(image_path, work / "out", predictor, segment_settings)
            instances, classes, pred_xy, pred_types = _predicted(
                result.out_dir, sample.inst_map.shape
            )
            shutil.rmtree(result.out_dir, ignore_errors=True)
            image_path.unlink()

            pq = panoptic_quality(sample.inst_map, instances)
            row = {
                "image": sample.name,
                "true_nuclei": int(len(np.unique(sample.inst_map)) - (sample.inst_map.min() == 0)),
                "predicted_nuclei": len(pred_types),
                "dice": dice(sample.inst_map, instances),
                "aji": aji(sample.inst_map, instances),
                "dq": pq.dq,
                "sq": pq.sq,
                "pq": pq.pq,
            }
            per_image.append(row)
            true_xy, true_types = instance_centroids(sample.inst_map, sample.type_map)
            matches.add(true_xy, true_types, pred_xy, pred_types, radius_px)
            if typed:
                confusion += confusion_matrix(sample.type_map, classes, n_classes)
                if index % panel_every == 0 and len(panels) < 4:
                    panels.append((sample.name, sample.image, sample.type_map, classes))
    finally:
        pipeline_logger.setLevel(pipeline_level)
        shutil.rmtree(work, ignore_errors=True)
    runtime = time.perf_counter() - started

    def mean(key: str) -> float:
        values = np.array([r[key] for r in per_image], np.float64)
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    metrics: dict[str, Any] = {
        "dice": mean("dice"),
        "aji": mean("aji"),
        "dq": mean("dq"),
        "sq": mean("sq"),
        "pq": mean("pq"),
        "f_d": matches.detection_f1(),
    }
    if typed:
        metrics["f_c"] = {
            name: matches.type_f1(type_id)
            for type_id, name in enumerate(config.class_names)
            if type_id > 0
        }
        metrics["type_accuracy"] = matches.type_accuracy()
        metrics.update(pixel_scores(confusion, config.class_names))
    metrics["nuclei"] = matches.counts()
    metrics["n_images"] = len(per_image)
    metrics["data"] = str(Path(data).resolve())
    metrics["model"] = {
        "name": config.name,
        "version": config.version,
        "path": str(predictor.model.path) if predictor.model.path else None,
    }
    metrics["settings"] = {
        **asdict(settings),
        "segment": asdict(segment_settings),
        "pairing_radius_px": radius_px,
    }
    metrics["device"] = str(predictor.device)
    metrics["runtime_s"] = round(runtime, 1)
    if typed:
        metrics["pixel_confusion"] = confusion.tolist()
        metrics["nucleus_confusion"] = matches.confusion(n_classes - 1).tolist()
    out.write_text(json.dumps(metrics, indent=1, allow_nan=True) + "\n")
    _write_per_image(per_image, out.parent / "per_image.csv")
    if typed:
        _write_figures(metrics, panels, config, out.parent)
    logger.info(
        "%d images: Dice %.3f AJI %.3f PQ %.3f F_d %.3f in %.0f s -> %s",
        len(per_image),
        metrics["dice"],
        metrics["aji"],
        metrics["pq"],
        metrics["f_d"],
        runtime,
        out,
    )
    return metrics


def _write_per_image(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_figures(metrics: dict[str, Any], panels, config, folder: Path) -> None:
    from histobatch.plots import plot_confusion, plot_samples

    plot_confusion(
        np.asarray(metrics["pixel_confusion"]),
        config.class_names,
        folder / "confusion.png",
        title="pixels (rows: truth)",
    )
    plot_confusion(
        np.asarray(metrics["nucleus_confusion"]),
        ["unmatched", *config.class_names[1:]],
        folder / "confusion_nuclei.png",
        title=f"nuclei paired within {metrics['settings']['pairing_radius_px']:g} px (rows: truth)",
    )
    if panels:
        plot_samples(panels, config.class_colors, folder / "samples.png")
