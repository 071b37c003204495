"""Slide readers: OpenSlide formats and plain images behind one small interface, plus µm/px.

Every format OpenSlide opens (Aperio SVS incl. JPEG 2000, Hamamatsu NDPI, MIRAX, Leica SCN,
generic tiled TIFF, DICOM, ...) is read through openslide-python (``openslide-bin`` ships the
library). Plain images Pillow or tifffile open (PNG, JPEG, BMP, untiled TIFF) become one-level
slides held in memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from histobatch.errors import SlideError

logger = logging.getLogger(__name__)

#: Plausible µm/px range for brightfield scans (about 400x down to 0.5x objective).
MPP_RANGE = (0.05, 20.0)
PLAIN_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
#: What a plain image (PNG, JPEG, ...) shows beyond its border: ``reflect`` (its own pixels
#: mirrored, as for a field of view cut from tissue) or ``white`` (glass, as beyond a slide's
#: scan area). See bench/RESULTS.md "Plain images: what lies beyond the border".
PLAIN_IMAGE_OUTSIDE = "reflect"


@dataclass
class Slide:
    """An open slide.

    Attributes
    ----------
    path
        The file.
    format
        Vendor/format name (``aperio``, ``generic-tiff``, ``image``, ...).
    level_dimensions
        ``(width, height)`` of every pyramid level, level 0 first.
    level_downsamples
        Downsample of each level relative to level 0.
    mpp
        Micrometres per level-0 pixel (``None`` when unknown).
    mpp_source
        Where ``mpp`` came from: ``metadata``, ``--mpp`` or ``none``.
    outside
        What :meth:`read_region` returns beyond the image: ``white`` (glass; slides) or
        ``reflect`` (mirrored pixels; plain images, see :data:`PLAIN_IMAGE_OUTSIDE`).
    """

    path: Path
    format: str
    level_dimensions: list[tuple[int, int]]
    level_downsamples: list[float]
    mpp: float | None
    mpp_source: str
    properties: dict[str, str] = field(default_factory=dict, repr=False)
    _handle: object = field(default=None, repr=False)
    _array: np.ndarray | None = field(default=None, repr=False)
    outside: str = "white"

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self.level_dimensions[0]

    def read_region(self, level: int, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB pixels of a region of one level, white (or mirrored, see ``outside``) beyond it.

        Parameters
        ----------
        level
            Pyramid level.
        x, y
            Top-left corner in **that level's** pixels (may be negative).
        width, height
            Size in that level's pixels.

        Returns
        -------
        numpy.ndarray
            ``(height, width, 3)`` uint8.
        """
        if self._array is not None:
            if self.outside == "reflect":
                return _crop_reflected(self._array, x, y, width, height)
            return _crop_padded(self._array, x, y, width, height)
        downsample = self.level_downsamples[level]
        try:
            rgba = self._handle.read_region(
                (int(round(x * downsample)), int(round(y * downsample))), level, (width, height)
            )
        except Exception as exc:  # openslide raises OpenSlideError for corrupt tiles
            raise SlideError(
                f"cannot read pixels (corrupt or truncated file?): {exc}", self.path
            ) from None
        array = np.asarray(rgba)
        rgb = array[..., :3].astype(np.uint16)
        alpha = array[..., 3:4].astype(np.uint16)
        # Premultiplied RGBA over white: transparent areas (outside the scan) become white.
        return (rgb + (255 - alpha)).clip(0, 255).astype(np.uint8)

    def thumbnail(self, max_size: int = 2048) -> tuple[np.ndarray, float]:
        """A whole-slide RGB picture and its downsample factor relative to level 0."""
        width, height = self.dimensions
        target = max(width, height) / max_size
        level = self.best_level_for_downsample(max(target, 1.0))
        lw, lh = self.level_dimensions[level]
        image = self.read_region(level, 0, 0, lw, lh)
        factor = self.level_downsamples[level]
        if max(lw, lh) > max_size:
            import cv2

            scale = max_size / max(lw, lh)
            size = (max(1, round(lw * scale)), max(1, round(lh * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            factor = width / size[0]
        return image, factor

    @property
    def associated_images(self) -> dict[str, tuple[int, int]]:
        """Names and ``(width, height)`` of the associated images (label, macro, thumbnail)."""
        if self._handle is None:
            return {}
        return {name: image.size for name, image in self._handle.associated_images.items()}

    @property
    def objective_power(self) -> float | None:
        """Scanner objective magnification from the metadata, if recorded."""
        value = self.properties.get("openslide.objective-power")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed ``downsample`` (+0.5 % slack)."""
        candidates = [i for i, d in enumerate(self.level_downsamples) if d <= downsample * 1.005]
        return max(candidates, key=lambda i: self.level_downsamples[i]) if candidates else 0

    def close(self) -> None:
        """Release the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _crop_padded(array: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, np.uint8)
    h, w = array.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, w), min(y + height, h)
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = array[y0:y1, x0:x1]
    return out


def _reflect_indices(start: int, length: int, size: int) -> np.ndarray:
    """Indices ``start .. start + length - 1`` mirrored into ``[0, size)`` about the edge pixels
    (numpy's ``reflect`` padding, however far outside).

    The edge pixel is not repeated, so a nucleus cut by the border and its mirror image form one
    blob centred on the edge pixel: inside the image, where the tile that owns it keeps it.
    """
    if size == 1:
        return np.zeros(length, np.int64)
    period = 2 * (size - 1)
    index = np.arange(start, start + length) % period
    return np.where(index < size, index, period - index)


def _crop_reflected(array: np.ndarray, x: int, y: int, width: int, height: int) -> np.ndarray:
    h, w = array.shape[:2]
    if x >= 0 and y >= 0 and x + width <= w and y + height <= h:
        return np.ascontiguousarray(array[y : y + height, x : x + width])
    rows = _reflect_indices(y, height, h)
    cols = _reflect_indices(x, width, w)
    return np.ascontiguousarray(array[rows[:, None], cols[None, :]])


def check_mpp(mpp: float, source: str, path: Path) -> float:
    """Refuse µm/px values outside :data:`MPP_RANGE`."""
    low, high = MPP_RANGE
    if not (low <= mpp <= high):
        raise SlideError(
            f"µm/px {mpp:g} from {source} is outside the plausible range {low}-{high}; "
            "pass a correct --mpp (e.g. 0.25 for 40x, 0.5 for 20x)",
            path,
        )
    return float(mpp)


def _openslide_mpp(properties: dict[str, str]) -> float | None:
    for key in ("openslide.mpp-x", "openslide.mpp-y", "aperio.MPP"):
        value = properties.get(key)
        if value:
            try:
                mpp = float(value)
            except ValueError:
                continue
            if mpp > 0:
                return mpp
    return None


#: Suffixes TIAToolbox reads as pyramids where OpenSlide cannot (OME-TIFF, JPEG 2000, OME-Zarr).
TIATOOLBOX_SUFFIXES = (".ome.tif", ".ome.tiff", ".jp2", ".zarr")


class _TiaToolboxHandle:
    """TIAToolbox's ``WSIReader`` behind the part of OpenSlide's API that :class:`Slide` uses."""

    def __init__(self, reader) -> None:
        self.reader = reader
        info = reader.info
        self.level_dimensions = [tuple(map(int, d)) for d in info.level_dimensions]
        self.level_downsamples = [float(d) for d in info.level_downsamples]
        vendor = info.vendor if info.vendor not in (None, "None") else type(reader).__name__
        self.properties = {"openslide.vendor": f"tiatoolbox:{vendor}"}
        if info.mpp is not None:
            self.properties["openslide.mpp-x"] = str(float(info.mpp[0]))
            self.properties["openslide.mpp-y"] = str(float(info.mpp[1]))
        if info.objective_power:
            self.properties["openslide.objective-power"] = str(info.objective_power)
        self.associated_images: dict = {}

    def read_region(self, location, level: int, size):
        rgb = self.reader.read_rect(
            location,
            size,
            resolution=level,
            units="level",
            pad_mode="constant",
            pad_constant_values=255,
        )
        rgb = np.asarray(rgb)[..., :3]
        alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
        return np.concatenate([rgb, alpha], axis=2)

    def close(self) -> None:
        closer = getattr(self.reader, "close", None)
        if closer is not None:
            closer()


def _tiatoolbox_handle(path: Path):
    """A TIAToolbox reader for formats OpenSlide lacks, when the extra is installed, else None."""
    if not path.name.lower().endswith(TIATOOLBOX_SUFFIXES):
        return None
    try:
        from tiatoolbox.wsicore.wsireader import WSIReader
    except ImportError:
        logger.info(
            "%s: read without its pyramid or µm/px metadata; pip install "
            "'histobatch[tiatoolbox]' reads it fully",
            path.name,
        )
        return None
    try:
        return _TiaToolboxHandle(WSIReader.open(path))
    except Exception as exc:  # TIAToolbox raises many kinds for files it cannot read
        logger.debug("%s: TIAToolbox cannot read it either (%s)", path.name, exc)
        return None


def _open_plain_image(path: Path) -> tuple[np.ndarray, float | None]:
    """Read a plain image with Pillow (or tifffile) and its µm/px from resolution tags."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            mpp = None
            info = getattr(image, "tag_v2", None)
            if info is not None and 282 in info and info.get(296, 2) == 3:  # XResolution, cm
                xres = float(info[282])
                mpp = 1e4 / xres if xres > 0 else None
            array = np.asarray(image.convert("RGB"))
            return array, mpp
    except UnidentifiedImageError:
        pass
    except (OSError, ValueError, SyntaxError) as exc:
        raise SlideError(f"corrupt or truncated image: {exc}", path) from None
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            array = tifffile.imread(path)
        except Exception as exc:
            raise SlideError(f"cannot read TIFF: {exc}", path) from None
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        return np.ascontiguousarray(array[..., :3]).astype(np.uint8), None
    raise SlideError(
        "unsupported format: neither OpenSlide nor Pillow can read it "
        "(expected a whole-slide image such as .svs/.ndpi/.mrxs/.tiff/.dcm or a PNG/JPEG)",
        path,
    )


def open_slide(path: str | Path, mpp: float | None = None, require_mpp: bool = True) -> Slide:
    """Open a slide or plain image, checking the input at the boundary.

    Parameters
    ----------
    path
        Slide file.
    mpp
        µm/px that overrides (or supplies) the metadata value.
    require_mpp
        Raise when no µm/px is known (the default; resampling to the model needs it).

    Raises
    ------
    SlideError
        With a one-line reason naming the file and what to do.
    """
    import openslide

    path = Path(path)
    if not path.exists():
        raise SlideError("file not found", path)
    if path.is_dir():
        raise SlideError("is a directory; pass slide files (e.g. 'slides/*.svs')", path)
    if path.stat().st_size == 0:
        raise SlideError("empty file (0 bytes); copy the slide again", path)

    array = None
    # OME-TIFF / JPEG 2000 / OME-Zarr: TIAToolbox (optional extra) reads their pyramids and µm/px,
    # where OpenSlide sees at most a single-level generic TIFF.
    handle = _tiatoolbox_handle(path)
    if handle is None:
        try:
            handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError:
            handle = None
        except openslide.OpenSlideError as exc:
            raise SlideError(f"corrupt or truncated slide: {exc}", path) from None

    if handle is not None:
        properties = dict(handle.properties)
        meta_mpp = _openslide_mpp(properties)
        fmt = properties.get("openslide.vendor", "openslide")
        dims = [tuple(map(int, d)) for d in handle.level_dimensions]
        downsamples = [float(d) for d in handle.level_downsamples]
    else:
        array, meta_mpp = _open_plain_image(path)
        properties = {}
        fmt = "image"
        dims = [(array.shape[1], array.shape[0])]
        downsamples = [1.0]

    missing = "no µm/px in the slide metadata"
    if meta_mpp is not None and not (MPP_RANGE[0] <= meta_mpp <= MPP_RANGE[1]):
        # Typically a screen resolution (72 dpi = 352.8 µm/px) written by a generic TIFF writer.
        missing = f"the metadata's µm/px ({meta_mpp:g}) is not a scan resolution"
        meta_mpp = None
    if mpp is not None:
        chosen, source = check_mpp(float(mpp), "--mpp", path), "--mpp"
    elif meta_mpp is not None:
        chosen, source = meta_mpp, "metadata"
    else:
        chosen, source = None, "none"
    if chosen is None and require_mpp:
        if handle is not None:
            handle.close()
        raise SlideError(
            f"{missing}; pass --mpp (e.g. --mpp 0.25 for 40x, --mpp 0.5 for 20x)", path
        )
    slide = Slide(path, fmt, dims, downsamples, chosen, source, properties, handle, array)
    if array is not None:
        slide.outside = PLAIN_IMAGE_OUTSIDE
    return slide
