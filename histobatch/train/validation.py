"""Validation during training: the loss and the field's nucleus metrics on held-out images,
per data source (e.g. CoNSeP's validation tiles, and other organs of a multi-organ set)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Per-source keys kept in the history (the headline source keeps every key).
SOURCE_KEYS = ("val_loss", "val_np_dice", "val_aji", "val_pq", "val_f_d")


def evaluate_validation(network, samples, model_config, device, dtype, margin: int = 0) -> dict:
    """Validation scores from one forward pass per image (mirrored by ``margin`` pixels, as
    ``segment`` mirrors a plain image into its tile margins).

    Returns the loss, nuclear-pixel Dice, the nucleus metrics after post-processing (AJI and PQ
    averaged over images, F_d and F_c pooled; see :mod:`histobatch.instance_metrics`) and, for
    typed data, pixel accuracy, IoU per class, mean IoU and the confusion matrix (a pixel's class
    is its most probable nucleus type where the nuclear-pixel head says "nucleus").
    """
    import torch

    from histobatch.inference import predict_image, raw_to_maps
    from histobatch.instance_metrics import (
        PointMatches,
        aji,
        instance_centroids,
        panoptic_quality,
    )
    from histobatch.metrics import confusion_matrix, pixel_scores
    from histobatch.postprocess import instances_from_maps
    from histobatch.targets import separation_targets
    from histobatch.train.losses import nucleus_loss

    n_classes = model_config.n_classes
    offset = model_config.type_offset
    confusion = np.zeros((n_classes, n_classes), np.int64)
    inter = union_sum = loss_sum = 0.0
    ajis, pqs = [], []
    matches = PointMatches()
    typed = False
    network.eval()
    for sample in samples:
        out = predict_image(network, sample.image, model_config, device, dtype, margin)
        has = sample.type_map is not None
        types = sample.type_map if has else np.zeros_like(sample.inst_map)
        loss, _ = nucleus_loss(
            torch.from_numpy(out)[None],
            torch.from_numpy((sample.inst_map > 0).astype(np.float32))[None],
            torch.from_numpy(separation_targets(sample.inst_map, model_config.separation))[None],
            torch.from_numpy(types.astype(np.int64))[None],
            torch.tensor([has]),
            separation=model_config.separation,
        )
        loss_sum += float(loss)
        nuclear = out[0] > 0
        truth = sample.inst_map > 0
        inter += float((nuclear & truth).sum())
        union_sum += float(nuclear.sum() + truth.sum())
        maps = raw_to_maps(out, model_config)
        found = instances_from_maps(maps[0], maps[1], maps[2:], model_config.postprocess)
        ajis.append(aji(sample.inst_map, found.labels))
        pqs.append(panoptic_quality(sample.inst_map, found.labels).pq)
        true_xy, true_types = instance_centroids(sample.inst_map, sample.type_map)
        pred_xy, _ = instance_centroids(found.labels)
        matches.add(true_xy, true_types, pred_xy, found.types, 3.0 / model_config.mpp)
        if has:
            typed = True
            pred = np.where(nuclear, out[offset + 1 :].argmax(0) + 1, 0)
            confusion += confusion_matrix(sample.type_map, pred, n_classes)
    result: dict[str, Any] = {
        "val_loss": loss_sum / max(len(samples), 1),
        "val_np_dice": 2 * inter / union_sum if union_sum else float("nan"),
        "val_aji": float(np.nanmean(ajis)) if ajis else float("nan"),
        "val_pq": float(np.nanmean(pqs)) if pqs else float("nan"),
        "val_f_d": matches.detection_f1(),
    }
    if typed:
        scores = pixel_scores(confusion, model_config.class_names)
        result.update(
            {
                "val_f_c": {
                    name: matches.type_f1(i)
                    for i, name in enumerate(model_config.class_names)
                    if i > 0
                },
                "val_pixel_accuracy": scores["pixel_accuracy"],
                "val_iou": scores["iou"],
                "val_miou": scores["miou"],
                "val_confusion": confusion.tolist(),
            }
        )
    return result


def validate_sources(
    network, sources, model_config, device, dtype, margin: int = 0
) -> dict[str, Any]:
    """:func:`evaluate_validation` for each source with validation images.

    The first such source (the stage's first dataset, e.g. CoNSeP) gives the headline ``val_*``
    keys; every source's loss, Dice, AJI, PQ and F_d are under ``val_sources[name]``.
    """
    result: dict[str, Any] = {}
    per_source: dict[str, dict[str, float]] = {}
    for source in sources:
        if not source.val:
            continue
        scores = evaluate_validation(network, source.val, model_config, device, dtype, margin)
        if not result:
            result.update(scores)
        per_source[source.name] = {key: scores[key] for key in SOURCE_KEYS}
    if len(per_source) > 1:
        result["val_sources"] = per_source
    return result
