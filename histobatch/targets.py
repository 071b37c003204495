"""Training targets derived from instance maps (separation maps of the nucleus heads)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def hv_maps(inst_map: np.ndarray) -> np.ndarray:
    """Horizontal and vertical distances of each nuclear pixel to its nucleus' centre.

    For every instance, the x (then y) offset of each pixel from the instance's centroid is scaled
    to [-1, 1] by the instance's largest absolute offset on that axis (Graham et al., 2019). Pixels
    between two touching nuclei therefore jump from +1 to -1, which is what post-processing looks
    for to split them.

    Parameters
    ----------
    inst_map
        ``(H, W)`` integer instance labels, 0 = background.

    Returns
    -------
    numpy.ndarray
        ``(2, H, W)`` float32: channel 0 horizontal, channel 1 vertical; 0 on background.

    Examples
    --------
    >>> inst = np.zeros((5, 5), int); inst[1:4, 1:4] = 1
    >>> hv_maps(inst)[0, 2]
    array([ 0., -1.,  0.,  1.,  0.], dtype=float32)
    """
    out = np.zeros((2, *inst_map.shape), dtype=np.float32)
    slices = ndi.find_objects(inst_map.astype(np.int64, copy=False))
    for label, box in enumerate(slices, start=1):
        if box is None:
            continue
        mask = inst_map[box] == label
        ys, xs = np.nonzero(mask)
        for channel, coords in ((0, xs), (1, ys)):
            offset = coords - coords.mean()
            scale = np.abs(offset).max()
            values = offset / scale if scale > 0 else np.zeros_like(offset)
            view = out[channel][box]
            view[ys, xs] = values
    return out


def distance_maps(inst_map: np.ndarray) -> np.ndarray:
    """Distance of each nuclear pixel to its nucleus' boundary, scaled to 1 at the deepest pixel.

    The Euclidean distance transform of each instance alone (so a boundary shared with a touching
    nucleus counts as a boundary), divided by its maximum. Centres are near 1, rims and contact
    lines near 0, which post-processing uses for its markers (cf. Naylor et al., IEEE TMI 2018).

    Parameters
    ----------
    inst_map
        ``(H, W)`` integer instance labels, 0 = background.

    Returns
    -------
    numpy.ndarray
        ``(1, H, W)`` float32 in [0, 1]; 0 on background.

    Examples
    --------
    >>> inst = np.zeros((5, 7), int); inst[1:4, 1:6] = 1
    >>> distance_maps(inst)[0, 2]
    array([0. , 0.5, 1. , 1. , 1. , 0.5, 0. ], dtype=float32)
    """
    out = np.zeros((1, *inst_map.shape), dtype=np.float32)
    slices = ndi.find_objects(inst_map.astype(np.int64, copy=False))
    for label, box in enumerate(slices, start=1):
        if box is None:
            continue
        padded = np.pad(inst_map[box] == label, 1)
        distance = ndi.distance_transform_edt(padded)[1:-1, 1:-1]
        peak = distance.max()
        if peak > 0:
            view = out[0][box]
            inside = distance > 0
            view[inside] = distance[inside] / peak
    return out


def contact_pixels(inst_map: np.ndarray, width: int = 1) -> np.ndarray:
    """Nuclear pixels within ``width`` px (chessboard distance) of another nucleus.

    These are the pixels where touching nuclei meet: the ones post-processing must get right to
    split them, and the ones a separation loss can weight up (cf. the border weights of
    Ronneberger et al., MICCAI 2015).

    Parameters
    ----------
    inst_map
        ``(H, W)`` integer instance labels, 0 = background.
    width
        Half-width of the band on each side of a contact line, in pixels.

    Returns
    -------
    numpy.ndarray
        ``(H, W)`` bool.

    Examples
    --------
    >>> inst = np.zeros((3, 6), int); inst[:, 1:3] = 1; inst[:, 3:5] = 2
    >>> contact_pixels(inst)[1].astype(int)
    array([0, 0, 1, 1, 0, 0])
    """
    labels = np.asarray(inst_map, np.int64)
    size = 2 * width + 1
    nuclear = labels > 0
    highest = ndi.maximum_filter(labels, size=size)
    # Background is filled with a label above all others, so it never looks like a neighbour.
    lowest = ndi.minimum_filter(np.where(nuclear, labels, labels.max() + 1), size=size)
    return nuclear & ((highest != labels) | (lowest != labels))


def marker_maps(inst_map: np.ndarray) -> np.ndarray:
    """Nucleus cores: pixels deeper than half their nucleus' peak distance to its boundary.

    Touching nuclei share a boundary, so their cores are apart by construction; a nucleus only
    one or two pixels thick keeps its middle line.

    Returns
    -------
    numpy.ndarray
        ``(1, H, W)`` float32, 1 in cores and 0 elsewhere.

    Examples
    --------
    >>> inst = np.zeros((5, 7), int); inst[1:4, 1:6] = 1
    >>> marker_maps(inst)[0, 2]
    array([0., 0., 1., 1., 1., 0., 0.], dtype=float32)
    """
    return (distance_maps(inst_map) > 0.5).astype(np.float32)


def separation_targets(inst_map: np.ndarray, separation: str) -> np.ndarray:
    """The separation-head target of ``ModelConfig.separation`` (``hv``, ``distance`` or
    ``marker``)."""
    if separation == "hv":
        return hv_maps(inst_map)
    if separation == "distance":
        return distance_maps(inst_map)
    if separation == "marker":
        return marker_maps(inst_map)
    raise ValueError(f"unknown separation {separation!r}")


def type_map_from_instances(inst_map: np.ndarray, inst_type: np.ndarray) -> np.ndarray:
    """Paint each instance with its type id (``inst_type[i - 1]`` for instance ``i``)."""
    lut = np.concatenate([[0], np.asarray(inst_type).reshape(-1)]).astype(np.int64)
    return lut[np.clip(inst_map, 0, len(lut) - 1)]
