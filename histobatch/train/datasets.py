"""Readers for annotated nucleus datasets and the class maps that merge their types.

Three layouts are understood:

- ``consep``: ``Images/<name>.{png,jpg}`` + ``Labels/<name>.mat`` with ``inst_map``, ``type_map``,
  ``inst_type`` and ``inst_centroid`` (Graham et al., 2019);
- ``monuseg``: ``Images/<name>.png`` (or ``.tif``) + ``Annotations/<name>.xml``, Aperio XML with
  one polygon ``<Region>`` per nucleus (Kumar et al., 2017);
- ``instance_png``: ``Images/<name>.png`` + ``Labels/<name>.png`` instance maps (CPM-15).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from histobatch.errors import HistobatchError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

#: Class maps from a dataset's own type ids to the model's ids. ``None`` means "no types".
CLASS_MAPS: dict[str, dict[int, int] | None] = {
    # CoNSeP's 7 types -> the recipe's 4 (3+4 epithelial, 5+6+7 spindle-shaped).
    "consep7to4": {0: 0, 1: 1, 2: 2, 3: 3, 4: 3, 5: 4, 6: 4, 7: 4},
    # Labels already in the model's ids (e.g. the pre-merged consep4 release).
    "identity": None,
    # Type-less data: nuclei only.
    "none": None,
}


@dataclass
class Sample:
    """One annotated image.

    Attributes
    ----------
    name
        File stem.
    group
        Source tile/image; crops of one group are never split across train and validation.
    image
        ``(H, W, 3)`` uint8 RGB.
    inst_map
        ``(H, W)`` int32 instance labels, 0 = background.
    type_map
        ``(H, W)`` int64 model type ids, or ``None`` when the dataset has no types.
    """

    name: str
    group: str
    image: np.ndarray
    inst_map: np.ndarray
    type_map: np.ndarray | None


def apply_class_map(type_map: np.ndarray, class_map: str) -> np.ndarray | None:
    """Map a dataset's type ids to model ids with a declared map (see :data:`CLASS_MAPS`)."""
    if class_map not in CLASS_MAPS:
        raise HistobatchError(
            f"unknown class map {class_map!r}; choose one of {', '.join(CLASS_MAPS)}"
        )
    if class_map == "none":
        return None
    mapping = CLASS_MAPS[class_map]
    if mapping is None:
        return type_map.astype(np.int64)
    lut = np.zeros(max(mapping) + 1, np.int64)
    for source, target in mapping.items():
        lut[source] = target
    if type_map.max() >= len(lut):
        raise HistobatchError(f"type id {int(type_map.max())} not covered by class map {class_map}")
    return lut[type_map]


def group_of(name: str) -> str:
    """Source-tile name of a crop: ``train_10_003`` -> ``train_10``; other names are their own."""
    match = re.match(r"^(.*)_\d+$", name)
    return match.group(1) if match and "_" in match.group(1) else name


def _load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _images(folder: Path) -> list[Path]:
    images = sorted(p for p in (folder / "Images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise HistobatchError("no images found in Images/", folder)
    return images


def read_consep(folder: str | Path, class_map: str = "consep7to4") -> list[Sample]:
    """Read a CoNSeP-layout folder (``Images/`` + ``Labels/*.mat``)."""
    from scipy.io import loadmat

    folder = Path(folder)
    samples = []
    for image_path in _images(folder):
        label_path = folder / "Labels" / f"{image_path.stem}.mat"
        if not label_path.is_file():
            raise HistobatchError(f"no label file {label_path.name} for this image", image_path)
        mat = loadmat(label_path)
        inst_map = mat["inst_map"].astype(np.int32)
        type_map = apply_class_map(mat["type_map"].astype(np.int64), class_map)
        image = _load_rgb(image_path)
        samples.append(
            Sample(image_path.stem, group_of(image_path.stem), image, inst_map, type_map)
        )
    return samples


def parse_aperio_xml(path: str | Path) -> tuple[list[np.ndarray], float | None]:
    """Polygons (``(N, 2)`` x, y arrays) and µm/px from an Aperio annotation XML or ``.xml.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        import gzip

        with gzip.open(path) as handle:
            root = ET.parse(handle).getroot()
    else:
        root = ET.parse(path).getroot()
    mpp = root.get("MicronsPerPixel")
    polygons = []
    for region in root.iter("Region"):
        points = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
        if len(points) >= 3:
            polygons.append(np.asarray(points))
    return polygons, float(mpp) if mpp else None


def rasterise_polygons(polygons: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Instance map from polygons, later polygons drawn over earlier ones."""
    from skimage.draw import polygon as draw_polygon

    inst_map = np.zeros(shape, np.int32)
    for label, poly in enumerate(polygons, start=1):
        rr, cc = draw_polygon(poly[:, 1], poly[:, 0], shape)
        inst_map[rr, cc] = label
    # Renumber: fully overdrawn polygons leave gaps.
    values = np.unique(inst_map)
    lut = np.zeros(int(inst_map.max()) + 1, np.int32)
    lut[values[values > 0]] = np.arange(1, (values > 0).sum() + 1)
    return lut[inst_map]


def read_monuseg(folder: str | Path, class_map: str = "none") -> list[Sample]:
    """Read a MoNuSeg-layout folder (``Images/`` + ``Annotations/*.xml`` or ``*.xml.gz``); no
    types."""
    folder = Path(folder)
    samples = []
    for image_path in _images(folder):
        xml_path = folder / "Annotations" / f"{image_path.stem}.xml"
        if not xml_path.is_file() and xml_path.with_suffix(".xml.gz").is_file():
            xml_path = xml_path.with_suffix(".xml.gz")
        if not xml_path.is_file():
            raise HistobatchError(f"no annotation {xml_path.name} for this image", image_path)
        image = _load_rgb(image_path)
        polygons, _ = parse_aperio_xml(xml_path)
        inst_map = rasterise_polygons(polygons, image.shape[:2])
        samples.append(Sample(image_path.stem, image_path.stem, image, inst_map, None))
    return samples


def read_instance_png(folder: str | Path, class_map: str = "none") -> list[Sample]:
    """Read ``Images/*.png`` + ``Labels/*.png`` instance maps (CPM-15 layout); no types."""
    folder = Path(folder)
    samples = []
    for image_path in _images(folder):
        label_path = folder / "Labels" / f"{image_path.stem}.png"
        if not label_path.is_file():
            raise HistobatchError(f"no label {label_path.name} for this image", image_path)
        with Image.open(label_path) as label_image:
            inst_map = np.asarray(label_image).astype(np.int32)
        image = _load_rgb(image_path)
        if inst_map.shape != image.shape[:2]:
            raise HistobatchError("label and image sizes differ", label_path)
        samples.append(Sample(image_path.stem, image_path.stem, image, inst_map, None))
    return samples


READERS: dict[str, Callable[..., list[Sample]]] = {
    "consep": read_consep,
    "monuseg": read_monuseg,
    "instance_png": read_instance_png,
}


def read_dataset(
    layout: str,
    folder: str | Path,
    class_map: str,
    scale: float = 1.0,
    include: str | list[str] | None = None,
    exclude: str | list[str] | None = None,
) -> list[Sample]:
    """Read a dataset and optionally rescale it (e.g. 2.0 brings 20x images to 40x).

    Parameters
    ----------
    layout
        One of :data:`READERS`.
    class_map
        Name of a map in :data:`CLASS_MAPS`.
    scale
        Resize factor (images as slides are resampled to the model grid, labels nearest).
    include, exclude
        Optional globs (one or a list) on image stems, e.g. ``"image0[1-7]"``: keep the images
        that match an ``include`` and no ``exclude``.
    """
    if layout not in READERS:
        choices = ", ".join(READERS)
        raise HistobatchError(f"unknown dataset layout {layout!r}; choose one of {choices}")
    folder = Path(folder)
    if not folder.is_dir():
        raise HistobatchError("dataset folder not found", folder)
    samples = READERS[layout](folder, class_map=class_map)
    if include:
        samples = [s for s in samples if _matches(s.name, include)]
    if exclude:
        samples = [s for s in samples if not _matches(s.name, exclude)]
    if scale != 1.0:
        samples = [rescale_sample(s, scale) for s in samples]
    logger.info("read %d images from %s (%s, %s)", len(samples), folder, layout, class_map)
    return samples


def _matches(name: str, patterns: str | list[str]) -> bool:
    patterns = [patterns] if isinstance(patterns, str) else patterns
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def rescale_sample(sample: Sample, scale: float) -> Sample:
    """Resize a sample's image and label maps by ``scale``, exactly as slides are resampled to
    the model grid (:func:`histobatch.resample.rescale_array`)."""
    from histobatch.resample import rescale_array

    image = rescale_array(sample.image, scale)
    inst = rescale_array(sample.inst_map, scale, labels=True)
    types = None
    if sample.type_map is not None:
        types = rescale_array(sample.type_map, scale, labels=True)
    return Sample(sample.name, sample.group, image, inst, types)


def split_by_group(
    samples: list[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Split so that all crops of a source tile land on the same side."""
    groups = sorted({s.group for s in samples})
    rng = np.random.default_rng(seed)
    rng.shuffle(groups)
    n_val = int(round(len(groups) * val_fraction))
    if val_fraction > 0 and n_val == 0 and len(groups) > 1:
        n_val = 1
    val_groups = set(groups[:n_val])
    train = [s for s in samples if s.group not in val_groups]
    val = [s for s in samples if s.group in val_groups]
    return train, val
