"""Turn network maps into nucleus instances with a type and a type probability."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import remove_small_objects
from skimage.segmentation import watershed

from histobatch.model import PostprocessConfig


@dataclass
class TileInstances:
    """Instances found in one tile.

    Attributes
    ----------
    labels
        ``(H, W)`` int32 instance map of the tile, 1..n, 0 = background.
    types
        ``(n,)`` type id per instance (index ``i`` describes label ``i + 1``).
    type_probs
        ``(n,)`` mean probability of the chosen type over the instance's pixels.
    """

    labels: np.ndarray
    types: np.ndarray
    type_probs: np.ndarray


def instances_from_maps(
    np_prob: np.ndarray,
    centre_distance: np.ndarray,
    tp_prob: np.ndarray,
    settings: PostprocessConfig | None = None,
) -> TileInstances:
    """Marker-controlled watershed on the nuclear-pixel and distance maps.

    Parameters
    ----------
    np_prob
        ``(H, W)`` probability that a pixel is nuclear.
    centre_distance
        ``(H, W)`` normalised distance to the nucleus centre, 0 at centres and 1 at rims and
        contact lines (see :func:`histobatch.inference.centre_distance`).
    tp_prob
        ``(K, H, W)`` class probabilities (class 0 = background).
    settings
        Thresholds; defaults to :class:`~histobatch.model.PostprocessConfig`.

    Returns
    -------
    TileInstances
        Labels are numbered in raster order of their first pixel, so the result is deterministic.
    """
    settings = settings or PostprocessConfig()
    foreground = np_prob > settings.np_threshold
    foreground = ndi.binary_fill_holes(foreground)
    foreground = remove_small_objects(foreground, max_size=settings.min_area_px - 1)
    if not foreground.any():
        empty = np.zeros(np_prob.shape, np.int32)
        return TileInstances(empty, np.zeros(0, np.int64), np.zeros(0, np.float32))

    distance = np.asarray(centre_distance, np.float32)
    markers = foreground & (distance < settings.marker_threshold)
    markers = remove_small_objects(markers, max_size=settings.min_marker_px - 1)
    marker_labels, n_markers = ndi.label(markers)

    # Foreground components without any marker still become one nucleus each.
    components, n_components = ndi.label(foreground)
    has_marker = np.zeros(n_components + 1, bool)
    has_marker[np.unique(components[marker_labels > 0])] = True
    orphan = has_marker[components] == 0
    orphan &= foreground
    if orphan.any():
        orphan_labels, n_orphans = ndi.label(orphan)
        marker_labels[orphan_labels > 0] = orphan_labels[orphan_labels > 0] + n_markers

    energy = cv2.GaussianBlur(distance, (0, 0), 1.0)
    labels = watershed(energy, marker_labels, mask=foreground)
    labels = _relabel_sequential_raster(labels)
    labels = remove_small_instances(labels, settings.min_area_px)
    types, type_probs = instance_types(labels, tp_prob)
    return TileInstances(labels.astype(np.int32, copy=False), types, type_probs)


def _relabel_sequential_raster(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 1..n in raster order of their first pixel."""
    flat = labels.ravel()
    values, first = np.unique(flat, return_index=True)
    keep = values > 0
    values, first = values[keep], first[keep]
    order = values[np.argsort(first)]
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    return lut[labels]


def remove_small_instances(labels: np.ndarray, min_area: int) -> np.ndarray:
    """Drop instances smaller than ``min_area`` pixels and renumber the rest sequentially."""
    counts = np.bincount(labels.ravel())
    keep = counts >= min_area
    keep[0] = False
    lut = np.zeros(len(counts), np.int32)
    lut[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    return lut[labels]


def instance_types(labels: np.ndarray, tp_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Majority type of each instance's pixels and the mean probability of that type.

    Background votes are ignored unless an instance has nothing else; then the most probable
    foreground class by mean probability is taken.
    """
    n = int(labels.max())
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    n_classes = tp_prob.shape[0]
    inside = labels > 0
    lab = labels[inside]
    pixel_class = tp_prob[:, inside].argmax(axis=0)
    votes = np.bincount(lab * n_classes + pixel_class, minlength=(n + 1) * n_classes)
    votes = votes.reshape(n + 1, n_classes)
    prob_sums = np.stack(
        [np.bincount(lab, weights=tp_prob[c][inside], minlength=n + 1) for c in range(n_classes)],
        axis=1,
    )
    counts = np.bincount(lab, minlength=n + 1).astype(np.float64)
    mean_probs = prob_sums / np.maximum(counts, 1)[:, None]
    fg_votes = votes[1:, 1:]
    types = fg_votes.argmax(axis=1) + 1
    no_votes = fg_votes.sum(axis=1) == 0
    types[no_votes] = mean_probs[1:, 1:][no_votes].argmax(axis=1) + 1
    type_probs = mean_probs[np.arange(1, n + 1), types].astype(np.float32)
    return types.astype(np.int64), type_probs
