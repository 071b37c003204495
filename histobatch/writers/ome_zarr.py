"""OME-NGFF 0.4 multiscale label images (zarr v2; read by ome-zarr-py, napari and QuPath).

Layout of ``masks.ome.zarr``::

    masks.ome.zarr/            {"labels": ["instances", "classes"]}
        instances/             multiscales + image-label; uint32 nucleus ids (= table ``id``)
            0/ 1/ 2/ ...       each level half the size of the previous one
        classes/               multiscales + image-label with class names and colours; uint8

Level 0 is on the model grid; the NGFF ``scale`` transformation gives its µm/px, so the masks are
physically aligned with the slide (whose level 0 has ``slide_mpp`` µm/px).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NGFF_VERSION = "0.4"


def pyramid_shapes(shape: tuple[int, int], top_size: int = 256, max_levels: int = 10) -> list:
    """Level shapes, halving until the larger side fits in ``top_size`` (an overview level).

    Examples
    --------
    >>> pyramid_shapes((1000, 1200))
    [(1000, 1200), (500, 600), (250, 300), (125, 150)]
    """
    shapes = [tuple(shape)]
    while len(shapes) < max_levels and max(shapes[-1]) > top_size and min(shapes[-1]) > 1:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def _multiscales(name: str, mpp: float, n_levels: int) -> list[dict]:
    return [
        {
            "version": NGFF_VERSION,
            "name": name,
            "axes": [
                {"name": "y", "type": "space", "unit": "micrometer"},
                {"name": "x", "type": "space", "unit": "micrometer"},
            ],
            "datasets": [
                {
                    "path": str(level),
                    # Strided downsampling keeps pixel 0 of every level at the origin, so a
                    # scale alone aligns the levels.
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [mpp * 2**level, mpp * 2**level]}
                    ],
                }
                for level in range(n_levels)
            ],
            "type": "nearest",
            "metadata": {"method": "numpy slicing [::2, ::2]"},
        }
    ]


class LabelPyramidWriter:
    """Create ``masks.ome.zarr`` and write level 0 chunk by chunk, then the lower levels.

    Parameters
    ----------
    path
        The ``.ome.zarr`` folder to create.
    shape
        ``(height, width)`` of level 0.
    chunk
        Square chunk side (aligned with the tile cores, so one writer per chunk).
    mpp
        µm per level-0 pixel.
    class_names, class_colors
        For the ``classes`` label's ``image-label`` metadata (index = class id).
    """

    def __init__(
        self,
        path: str | Path,
        shape: tuple[int, int],
        chunk: int,
        mpp: float,
        class_names: list[str],
        class_colors: list[list[int]],
    ) -> None:
        import zarr
        from numcodecs import Blosc

        self.path = Path(path)
        self.shapes = pyramid_shapes(shape)
        self.chunk = chunk
        root = zarr.open_group(str(self.path), mode="w", zarr_format=2)
        root.attrs.update({"labels": ["instances", "classes"]})
        compressor = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
        self.arrays: dict[str, list] = {}
        for name, dtype in (("instances", np.uint32), ("classes", np.uint8)):
            group = root.create_group(name)
            levels = []
            for level, level_shape in enumerate(self.shapes):
                levels.append(
                    group.create_array(
                        str(level),
                        shape=level_shape,
                        chunks=(min(chunk, level_shape[0]), min(chunk, level_shape[1])),
                        dtype=dtype,
                        fill_value=0,
                        compressor=compressor,
                        chunk_key_encoding={"name": "v2", "separator": "/"},
                    )
                )
            self.arrays[name] = levels
            label_meta: dict = {"version": NGFF_VERSION}
            if name == "classes":
                label_meta["colors"] = [
                    {"label-value": i, "rgba": [*map(int, c), 255]}
                    for i, c in enumerate(class_colors)
                    if i > 0
                ]
                label_meta["properties"] = [
                    {"label-value": i, "class": n} for i, n in enumerate(class_names) if i > 0
                ]
            group.attrs.update(
                {
                    "multiscales": _multiscales(name, mpp, len(self.shapes)),
                    "image-label": label_meta,
                }
            )

    def write_chunk(self, y: int, x: int, instances: np.ndarray, classes: np.ndarray) -> None:
        """Write one level-0 region (usually one chunk) of both labels."""
        h, w = instances.shape
        self.arrays["instances"][0][y : y + h, x : x + w] = instances
        self.arrays["classes"][0][y : y + h, x : x + w] = classes

    def build_pyramid(self) -> None:
        """Fill levels 1.. by 2x nearest-neighbour downsampling, one chunk row at a time."""
        for levels in self.arrays.values():
            for level in range(1, len(levels)):
                source, target = levels[level - 1], levels[level]
                band = 2 * self.chunk
                for y in range(0, source.shape[0], band):
                    block = source[y : y + band, :][::2, ::2]
                    target[y // 2 : y // 2 + block.shape[0], : block.shape[1]] = block
