"""Choose post-processing thresholds on the validation split (never on test data).

The nuclear-pixel threshold and the marker threshold of :func:`histobatch.postprocess.
instances_from_maps` trade merges against splits differently for every trained network, so they
are picked by grid search for the best mean panoptic quality on validation images, as StarDist
does for its probability and NMS thresholds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import numpy as np

logger = logging.getLogger(__name__)

NP_THRESHOLDS = (0.4, 0.5, 0.6)
MARKER_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def tune_postprocess(
    network,
    samples,
    model_config,
    device: str,
    dtype,
    np_thresholds=NP_THRESHOLDS,
    marker_thresholds=MARKER_THRESHOLDS,
    margin: int = 0,
):
    """Grid-search the thresholds for the best mean PQ (ties: AJI) on ``samples``.

    Returns
    -------
    best : PostprocessConfig
        ``model_config.postprocess`` with the chosen thresholds.
    table : list of dict
        Mean PQ and AJI of every combination.
    """
    from histobatch.inference import predict_image, raw_to_maps
    from histobatch.instance_metrics import aji, panoptic_quality
    from histobatch.postprocess import instances_from_maps

    network.eval()
    maps = [
        raw_to_maps(
            predict_image(network, s.image, model_config, device, dtype, margin), model_config
        )
        for s in samples
    ]
    table = []
    for np_threshold in np_thresholds:
        for marker_threshold in marker_thresholds:
            settings = replace(
                model_config.postprocess,
                np_threshold=float(np_threshold),
                marker_threshold=float(marker_threshold),
            )
            pqs, ajis = [], []
            for sample, m in zip(samples, maps, strict=True):
                labels = instances_from_maps(m[0], m[1], m[2:], settings).labels
                pqs.append(panoptic_quality(sample.inst_map, labels).pq)
                ajis.append(aji(sample.inst_map, labels))
            table.append(
                {
                    **asdict(settings),
                    "pq": float(np.nanmean(pqs)),
                    "aji": float(np.nanmean(ajis)),
                }
            )
    best_row = max(table, key=lambda row: (row["pq"], row["aji"]))
    best = replace(
        model_config.postprocess,
        np_threshold=best_row["np_threshold"],
        marker_threshold=best_row["marker_threshold"],
    )
    logger.info(
        "post-processing thresholds on %d validation images: np %.2f, marker %.2f "
        "(PQ %.3f, AJI %.3f)",
        len(samples),
        best.np_threshold,
        best.marker_threshold,
        best_row["pq"],
        best_row["aji"],
    )
    return best, table
