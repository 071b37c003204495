"""Stain normalisation to a target image with TIAToolbox (the optional ``tiatoolbox`` extra).

TIAToolbox's normalisers (Macenko, Vahadane, Ruifrok, Reinhard) estimate the *source* stain from
every image they transform. Applied tile by tile, that would give every tile of a slide its own
colours, and overlapping tiles different pixels, breaking seamless stitching. So the source is
estimated once per slide, on the tissue pixels of its thumbnail, and every tile is transformed
with those fixed numbers: TIAToolbox does the estimation (stain matrices, concentrations, LAB
statistics); this module only holds the per-slide numbers fixed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from histobatch.errors import HistobatchError

METHODS = ("macenko", "vahadane", "ruifrok", "reinhard")
INSTALL_HINT = (
    "--stain-norm needs TIAToolbox: pip install 'histobatch[tiatoolbox]' in its own environment "
    "(TIAToolbox pins torch < 2.13 and numpy < 2.4.4)"
)


def _tiatoolbox_normalizer(method: str):
    try:
        from tiatoolbox.tools.stainnorm import get_normalizer
    except ImportError:
        raise HistobatchError(INSTALL_HINT) from None
    return get_normalizer(method)


class SlideStainNormalizer:
    """A TIAToolbox normaliser fitted to a target image, with source numbers fixed per slide.

    Parameters
    ----------
    method
        ``macenko``, ``vahadane``, ``ruifrok`` or ``reinhard``.
    target
        RGB uint8 target image (a well-stained reference tile).
    """

    def __init__(self, method: str, target: np.ndarray) -> None:
        method = method.lower()
        if method not in METHODS:
            raise HistobatchError(f"unknown --stain-norm {method!r}; use {', '.join(METHODS)}")
        self.method = method
        self.normalizer = _tiatoolbox_normalizer(method)
        # TIAToolbox writes into its inputs: always hand it copies.
        self.normalizer.fit(np.array(target[..., :3], np.uint8))
        self.source: dict[str, np.ndarray] | None = None

    def fit_source(self, pixels: np.ndarray) -> SlideStainNormalizer:
        """Estimate the slide's stain from tissue pixels (any shape ``(..., 3)``, uint8)."""
        image = np.array(pixels.reshape(-1, 1, 3), np.uint8)
        if self.method == "reinhard":
            means, stds = self.normalizer.get_mean_std(image)
            self.source = {"means": np.array(means), "stds": np.maximum(np.array(stds), 1e-6)}
        else:
            matrix = self.normalizer.extractor.get_stain_matrix(image)
            concentrations = self.normalizer.get_concentrations(image, matrix)
            max_c = np.percentile(concentrations, 99, axis=0).reshape((1, 2))
            self.source = {"matrix": matrix, "max_c": np.maximum(max_c, 1e-6)}
        return self

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        """Normalise one RGB uint8 tile with the slide's fixed source numbers."""
        if self.source is None:
            raise RuntimeError("fit_source() first")
        normalizer = self.normalizer
        tile = np.array(tile, np.uint8)
        if self.method == "reinhard":
            channels = normalizer.lab_split(tile)
            scaled = [
                (channel - mean) * (target_std / std) + target_mean
                for channel, mean, std, target_mean, target_std in zip(
                    channels,
                    self.source["means"],
                    self.source["stds"],
                    normalizer.target_means,
                    normalizer.target_stds,
                    strict=True,
                )
            ]
            return normalizer.merge_back(*scaled)
        concentrations = normalizer.get_concentrations(tile, self.source["matrix"])
        concentrations *= normalizer.maxC_target / self.source["max_c"]
        od = concentrations @ normalizer.stain_matrix_target
        return np.clip(255 * np.exp(-od), 0, 255).reshape(tile.shape).astype(np.uint8)


def load_target(path: str | Path) -> np.ndarray:
    """The target image as RGB uint8, with a one-line error for a bad file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise HistobatchError(f"cannot read the --stain-target image ({exc})", path) from None


class StainNormalizedSpace:
    """A :class:`histobatch.resample.ModelSpace` whose tiles come out stain-normalised."""

    def __init__(self, space, normalizer: SlideStainNormalizer) -> None:
        self.space = space
        self.normalizer = normalizer

    def __getattr__(self, name):
        return getattr(self.space, name)

    def read(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        return self.normalizer(self.space.read(x, y, width, height))


_FITTED: dict[tuple[str, str], SlideStainNormalizer] = {}


def slide_normalizer(method: str, target: str | Path) -> SlideStainNormalizer:
    """A fresh copy of the normaliser fitted to ``target`` (fitted once per process)."""
    import copy

    key = (method.lower(), str(Path(target).resolve()))
    if key not in _FITTED:
        _FITTED[key] = SlideStainNormalizer(method, load_target(target))
    return copy.deepcopy(_FITTED[key])


def tissue_pixels(thumbnail: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """RGB pixels of the thumbnail under the tissue mask (all pixels if there is no tissue)."""
    import cv2

    h, w = thumbnail.shape[:2]
    resized = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return thumbnail[resized] if resized.any() else thumbnail.reshape(-1, 3)
