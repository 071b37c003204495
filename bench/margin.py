"""How much context does a tile need? Tiled predictions against one full-context pass.

    python bench/margin.py                 # default model, 12x12 consep4 test crops at 20x

A mosaic of real CoNSeP test crops is resampled to the model grid and predicted once whole (the
reference: every interior pixel sees all the context the network can use). Then the same interior
cores are predicted as tiles of ``core + 2 x margin`` pixels, for several margins, and compared with
the reference inside the cores: the share of pixels whose nuclear decision (p > 0.5) flips, the
share of nuclear pixels whose type flips, and the mean absolute change of the nuclear probability.
Nuclei: the tiled cores' maps are stitched into the reference's place, both are post-processed
(the model's own thresholds) over the cores' area, and nuclei are paired one-to-one by mutual
nearest centroids within 2 µm: the share of the reference's nuclei found again.
The smallest margin whose flips are negligible is the cheapest safe default: every margin pixel is
computed twice, so the model works ``(core + 2m)² / core²`` times the slide.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def mosaic(side: int, scale: float) -> np.ndarray:
    """``side`` x ``side`` consep4 test crops, resampled by ``scale`` (model grid)."""
    import cv2
    from PIL import Image
    from results import DATA

    paths = sorted((DATA / "consep4" / "test" / "Images").glob("*.jpg"))
    if not paths:
        sys.exit(f"no CoNSeP test crops under {DATA} (set HISTOBATCH_DATA)")
    rows = []
    for r in range(side):
        row = [
            np.asarray(Image.open(paths[(r * side + c) % len(paths)]).convert("RGB"))
            for c in range(side)
        ]
        rows.append(np.concatenate(row, axis=1))
    image = np.concatenate(rows, axis=0)
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _centroids(maps: np.ndarray, config) -> np.ndarray:
    """``(N, 2)`` nucleus centroids (x, y) after the model's post-processing of ``maps``."""
    from histobatch.instance_metrics import instance_centroids
    from histobatch.postprocess import instances_from_maps

    found = instances_from_maps(maps[0], maps[1], maps[2:], config.postprocess)
    return instance_centroids(found.labels)[0]


def _matched(a: np.ndarray, b: np.ndarray, tol: float) -> int:
    """Pairs of mutual nearest centroids within ``tol`` pixels."""
    from scipy.spatial import cKDTree

    if not len(a) or not len(b):
        return 0
    dist_ab, ab = cKDTree(b).query(a)
    _, ba = cKDTree(a).query(b)
    return int(
        sum(1 for i, (d, j) in enumerate(zip(dist_ab, ab, strict=True)) if d <= tol and ba[j] == i)
    )


def main() -> None:
    from results import publish

    from histobatch.device import configure_threads
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--side", type=int, default=12, help="crops per mosaic side")
    parser.add_argument("--core", type=int, default=256)
    parser.add_argument("--margins", default="0,32,64,96,128,192,256,384")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    configure_threads(None)
    model = load_model(args.model, "cpu")
    predictor = Predictor(model, "cpu", args.precision)
    image = mosaic(args.side, 0.25 / model.config.mpp)
    height, width = image.shape[:2]
    multiple = model.config.size_multiple
    height, width = height // multiple * multiple, width // multiple * multiple
    image = np.ascontiguousarray(image[:height, :width])
    started = time.perf_counter()
    reference = predictor(image[None])[0]
    print(f"reference {width}x{height} in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    margins = [int(m) for m in args.margins.split(",")]
    border = max(margins)  # cores whose largest tile still lies inside the image
    starts_x = range(border, width - border - args.core + 1, args.core)
    starts_y = range(border, height - border - args.core + 1, args.core)
    cores = [(x, y) for y in starts_y for x in starts_x]
    if not cores:
        sys.exit("image too small for the largest margin; raise --side")
    table = [
        "| margin px | margin µm | tile px | model work per core | nuclear flips % "
        "| type flips % | mean abs Δp | nuclei matched % |",
        "|---|---|---|---|---|---|---|---|",
    ]
    x0, y0 = cores[0]
    x1, y1 = cores[-1][0] + args.core, cores[-1][1] + args.core
    reference_xy = _centroids(reference[:, y0:y1, x0:x1], model.config)
    for margin in margins:
        size = args.core + 2 * margin
        flips = type_flips = nuclear = total = 0
        delta = 0.0
        stitched = reference.copy()
        for x, y in cores:
            tile = image[y - margin : y + args.core + margin, x - margin : x + args.core + margin]
            maps = predictor(np.ascontiguousarray(tile)[None])[0]
            inner = maps[:, margin : margin + args.core, margin : margin + args.core]
            ref = reference[:, y : y + args.core, x : x + args.core]
            stitched[:, y : y + args.core, x : x + args.core] = inner
            tiled_fg, ref_fg = inner[0] > 0.5, ref[0] > 0.5
            flips += int((tiled_fg != ref_fg).sum())
            both = tiled_fg & ref_fg
            type_flips += int((inner[2:].argmax(0) != ref[2:].argmax(0))[both].sum())
            nuclear += int(both.sum())
            delta += float(np.abs(inner[0] - ref[0]).sum())
            total += args.core * args.core
        tiled_xy = _centroids(stitched[:, y0:y1, x0:x1], model.config)
        matched = _matched(reference_xy, tiled_xy, 2.0 / model.config.mpp)
        row = (
            f"| {margin} | {margin * model.config.mpp:g} | {size} | {size**2 / args.core**2:.2f}x "
            f"| {100 * flips / total:.3f} | {100 * type_flips / max(nuclear, 1):.3f} "
            f"| {delta / total:.4f} | {100 * matched / max(len(reference_xy), 1):.1f} |"
        )
        table.append(row)
        print(row, file=sys.stderr)
    setup = (
        f"Model {args.model} ({model.config.mpp} µm/px), {len(cores)} interior cores of "
        f"{args.core} px on a {args.side}x{args.side} consep4-test mosaic ({width}x{height} on the "
        f"model grid), compared with one full-context pass; precision {args.precision}."
    )
    publish("Tile margin vs full context", setup, table)


if __name__ == "__main__":
    main()
