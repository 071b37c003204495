"""Shared fixtures: synthetic pyramidal slides (tifffile), an oracle model and a tiny real model.

The synthetic slides are pink "tissue" with dark, non-touching discs ("nuclei") of two colours on
a white background. The oracle network computes its maps pixel by pixel from colour, so its result
is known exactly and any difference between two tilings comes from tiling/stitching alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile

DATA = Path(
    os.environ.get(
        "HISTOBATCH_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
    )
)

TISSUE_RGB = (230, 180, 205)
RED_NUCLEUS = (125, 35, 60)  # red > blue -> oracle type 2 (inflammatory)
BLUE_NUCLEUS = (70, 40, 130)  # blue > red -> oracle type 3 (epithelial)


def real_data(*parts: str) -> Path:
    """Path under ../shared/data (or $HISTOBATCH_DATA); skips the test when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} (set HISTOBATCH_DATA)")
    return path


def make_disc_image(
    width: int, height: int, n_discs: int, seed: int = 0, radius: tuple[int, int] = (4, 9)
) -> tuple[np.ndarray, list[tuple]]:
    """RGB image with a tissue ellipse and non-touching discs; returns (image, discs).

    Each disc is ``(x, y, r, type_id)``.
    """
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 245, np.uint8)
    yy, xx = np.mgrid[:height, :width]
    tissue = ((xx - width / 2) / (width * 0.47)) ** 2 + (
        (yy - height / 2) / (height * 0.47)
    ) ** 2 < 1
    image[tissue] = TISSUE_RGB
    discs: list[tuple] = []
    attempts = 0
    while len(discs) < n_discs and attempts < n_discs * 50:
        attempts += 1
        r = int(rng.integers(radius[0], radius[1] + 1))
        x, y = (int(v) for v in rng.integers(r + 2, [width - r - 2, height - r - 2]))
        if not tissue[y, x]:
            continue
        if any((x - a) ** 2 + (y - b) ** 2 < (r + q + 4) ** 2 for a, b, q, _ in discs):
            continue
        type_id = 2 if rng.random() < 0.5 else 3
        discs.append((x, y, r, type_id))
        mask = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
        image[mask] = RED_NUCLEUS if type_id == 2 else BLUE_NUCLEUS
    return image, discs


def write_pyramidal_tiff(
    path: Path,
    image: np.ndarray,
    mpp: float | None,
    levels: int = 3,
    tile: int = 256,
    compression: str = "zlib",
) -> Path:
    """A generic tiled pyramidal TIFF that OpenSlide opens, with µm/px in resolution tags."""
    with tifffile.TiffWriter(path) as tif:
        current = image
        for level in range(levels):
            kwargs = {}
            if mpp is not None:
                res = 1e4 / (mpp * 2**level)
                kwargs = {"resolution": (res, res), "resolutionunit": "CENTIMETER"}
            tif.write(
                current,
                tile=(tile, tile),
                photometric="rgb",
                compression=compression,
                subfiletype=1 if level else 0,
                **kwargs,
            )
            if min(current.shape[:2]) < 2 * tile:
                break
            current = np.ascontiguousarray(current[::2, ::2])
    return path


@pytest.fixture(scope="session")
def disc_slide(tmp_path_factory) -> tuple[Path, list[tuple]]:
    """A 1200x1000 synthetic slide at 0.25 µm/px with ~150 discs."""
    folder = tmp_path_factory.mktemp("slides")
    image, discs = make_disc_image(1200, 1000, 150, seed=1)
    return write_pyramidal_tiff(folder / "discs.tiff", image, mpp=0.25), discs


def oracle_model():
    """A NucleusModel whose network computes maps from colour, pixel by pixel."""
    import torch

    from histobatch.model import ModelConfig, NucleusModel

    config = ModelConfig(name="oracle")
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)

    class Oracle(torch.nn.Module):
        def forward(self, x):
            rgb = x * std.to(x) + mean.to(x)
            brightness = rgb.mean(1, keepdim=True)
            np_logit = 40 * (0.45 - brightness)
            hv = torch.zeros_like(rgb[:, :2])
            d = rgb[:, 0:1] - rgb[:, 2:3]
            low = torch.full_like(d, -10.0)
            tp = torch.cat([-np_logit, low, 40 * d, -40 * d, low], dim=1)
            return torch.cat([np_logit, hv, tp], dim=1)

    return NucleusModel(config=config, network=Oracle())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A small random-weight smp model folder (encoder_weights=None)."""
    import torch

    from histobatch.model import ModelConfig, new_model, save_model

    torch.manual_seed(0)
    config = ModelConfig(
        name="tiny-random", encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8]
    )
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(new_model(config), folder)
    return folder


def match_centroids(a, b, tol: float = 1.0) -> set[tuple[int, int]]:
    """One-to-one matches of two nucleus tables: mutual nearest centroids within ``tol`` px.

    Returns ``(row in a, row in b)`` pairs.
    """
    from scipy.spatial import cKDTree

    if len(a) == 0 or len(b) == 0:
        return set()
    pa, pb = a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy()
    dist_ab, ab = cKDTree(pb).query(pa)
    _, ba = cKDTree(pa).query(pb)
    return {
        (i, int(j))
        for i, (j, d) in enumerate(zip(ab, dist_ab, strict=True))
        if d <= tol and ba[j] == i
    }


def write_consep_folder(
    folder: Path, n_tiles: int = 3, crops: int = 2, seed: int = 0, size: int = 64
):
    """A CoNSeP-layout folder of synthetic disc crops (``train_<tile>_<k>``) with .mat labels."""
    from PIL import Image
    from scipy.io import savemat

    (folder / "Images").mkdir(parents=True)
    (folder / "Labels").mkdir()
    rng = np.random.default_rng(seed)
    for tile in range(n_tiles):
        for k in range(crops):
            image, discs = make_disc_image(
                size, size, max(6, size * size // 700), seed=int(rng.integers(1 << 30))
            )
            inst = np.zeros((size, size), np.int32)
            yy, xx = np.mgrid[:size, :size]
            types = []
            for label, (x, y, r, type_id) in enumerate(discs, start=1):
                inst[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = label
                types.append(type_id)
            type_map = np.zeros_like(inst)
            for label, type_id in enumerate(types, start=1):
                type_map[inst == label] = type_id
            name = f"train_{tile}_{k:03d}"
            Image.fromarray(image).save(folder / "Images" / f"{name}.png")
            savemat(
                folder / "Labels" / f"{name}.mat",
                {
                    "inst_map": inst,
                    "type_map": type_map,
                    "inst_type": np.array(types).reshape(-1, 1),
                    "inst_centroid": np.array([[x, y] for x, y, _, _ in discs], float),
                },
            )
