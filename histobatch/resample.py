"""Reading slide pixels on the model's grid (µm/px) instead of the slide's.

The model grid is fixed for the whole slide: model pixel ``u`` has its centre at level-0 pixel
``(u + 0.5) / scale - 0.5`` where ``scale = slide_mpp / model_mpp``. Every tile is resampled with
this one mapping, so the pixels a tile sees do not depend on where the tile starts: overlapping
tiles see identical pixels, which is what makes tiled inference tile-invariant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from histobatch.slide import Slide


@dataclass
class ModelSpace:
    """A slide seen at the model's resolution.

    Attributes
    ----------
    slide
        The open slide (its ``mpp`` must be known).
    model_mpp
        Target µm/px.
    level
        Pyramid level read from: the coarsest whose µm/px is not coarser than ``model_mpp``.
    scale
        Model pixels per level-0 pixel.
    width, height
        Size of the whole slide on the model grid.
    """

    slide: Slide
    model_mpp: float

    def __post_init__(self) -> None:
        self.scale = self.slide.mpp / self.model_mpp
        self.level = self.slide.best_level_for_downsample(self.model_mpp / self.slide.mpp)
        self.level_scale = self.scale * self.slide.level_downsamples[self.level]
        width0, height0 = self.slide.dimensions
        self.width = max(1, int(round(width0 * self.scale)))
        self.height = max(1, int(round(height0 * self.scale)))

    @property
    def identity(self) -> bool:
        """True when the level is read pixel for pixel (no resampling)."""
        return abs(self.level_scale - 1.0) < 1e-6

    def to_level0(self, x: np.ndarray | float, y: np.ndarray | float):
        """Model-grid coordinates (pixel centres) to level-0 pixel coordinates."""
        return (np.asarray(x) + 0.5) / self.scale - 0.5, (np.asarray(y) + 0.5) / self.scale - 0.5

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB ``(height, width, 3)`` uint8 of a model-grid region (white outside the slide)."""
        s = self.level_scale
        if self.identity:
            return self.slide.read_region(self.level, x, y, width, height)
        pad = 2 + int(math.ceil(1.0 / s)) if s < 1 else 2
        lx0 = int(math.floor((x + 0.5) / s - 0.5)) - pad
        ly0 = int(math.floor((y + 0.5) / s - 0.5)) - pad
        lx1 = int(math.ceil((x + width - 0.5) / s - 0.5)) + pad
        ly1 = int(math.ceil((y + height - 0.5) / s - 0.5)) + pad
        source = self.slide.read_region(self.level, lx0, ly0, lx1 - lx0 + 1, ly1 - ly0 + 1)
        return warp_to_grid(source, s, x - lx0 * s, y - ly0 * s, width, height)


def warp_to_grid(
    source: np.ndarray,
    scale: float,
    x: float,
    y: float,
    width: int,
    height: int,
    labels: bool = False,
) -> np.ndarray:
    """Resample ``source`` onto a grid ``scale`` times as fine, pixel centres aligned.

    Output pixel ``(u, v)`` is centred on source position ``((u + x + 0.5) / scale - 0.5,
    (v + y + 0.5) / scale - 0.5)``. Images are low-passed first when shrinking (Gaussian,
    sigma ``0.5 / scale`` source pixels) and interpolated bilinearly, with white outside;
    ``labels=True`` takes the nearest source pixel and fills 0 outside. Slide tiles
    (:meth:`ModelSpace.read`) and training images (:func:`rescale_array`) go through this one
    function, so a model sees the same resampling in training and in use.
    """
    if not labels and scale < 1:
        source = cv2.GaussianBlur(source, (0, 0), sigmaX=0.5 / scale)
    matrix = np.array(
        [[1 / scale, 0, (x + 0.5) / scale - 0.5], [0, 1 / scale, (y + 0.5) / scale - 0.5]],
        np.float64,
    )
    if labels:
        # OpenCV does not warp int32; float32 holds label ids exactly below 2**24.
        warped = cv2.warpAffine(
            source.astype(np.float32),
            matrix,
            (width, height),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
        return warped.astype(source.dtype)
    return cv2.warpAffine(
        source,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(255, 255, 255),
    )


def rescale_array(array: np.ndarray, scale: float, labels: bool = False) -> np.ndarray:
    """A whole image (or label map) resampled by ``scale`` as slides are (see
    :func:`warp_to_grid`); the output is ``round(size * scale)`` pixels per side."""
    height, width = array.shape[:2]
    return warp_to_grid(
        array, scale, 0.0, 0.0, round(width * scale), round(height * scale), labels=labels
    )
