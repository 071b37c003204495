"""How much context does a tile need? Tiled predictions against one full-context pass.

    python bench/margin.py                 # default model, 12x12 consep4 test crops at 20x

A mosaic of real CoNSeP test crops is resampled to the model grid and predicted once whole (the
reference: every interior pixel sees all the context the network can use). Then the same interior
cores are predicted as tiles of ``core + 2 x margin`` pixels, for several margins, and compared with
the reference inside the cores: the share of pixels whose nuclear decision (p > 0.5) flips, the
share of nuclear pixels whose type flips, and the mean absolute change of the nuclear probability.
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


def main() -> None:
    from results import publish

    from histobatch.device import configure_threads
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--side", type=int, default=12, help="crops per mosaic side")
    parser.add_argument("--core", type=int, default=256)
    parser.add_argument("--margins", default="0,16,32,48,64,96,128,192")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    configure_threads(None)
    model = load_model(args.model, "cpu")
    predictor = Predictor(model, "cpu", args.precision)
    image = mosaic(args.side, 0.25 / model.config.mpp)
    height, width = image.shape[:2]
    height, width = height // 32 * 32, width // 32 * 32
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
        "| margin px | tile px | model work per core | nuclear flips % | type flips % "
        "| mean abs Δp |",
        "|---|---|---|---|---|---|",
    ]
    for margin in margins:
        size = args.core + 2 * margin
        flips = type_flips = nuclear = total = 0
        delta = 0.0
        for x, y in cores:
            tile = image[y - margin : y + args.core + margin, x - margin : x + args.core + margin]
            maps = predictor(np.ascontiguousarray(tile)[None])[0]
            inner = maps[:, margin : margin + args.core, margin : margin + args.core]
            ref = reference[:, y : y + args.core, x : x + args.core]
            tiled_fg, ref_fg = inner[0] > 0.5, ref[0] > 0.5
            flips += int((tiled_fg != ref_fg).sum())
            both = tiled_fg & ref_fg
            type_flips += int((inner[2:].argmax(0) != ref[2:].argmax(0))[both].sum())
            nuclear += int(both.sum())
            delta += float(np.abs(inner[0] - ref[0]).sum())
            total += args.core * args.core
        row = (
            f"| {margin} | {size} | {size**2 / args.core**2:.2f}x | {100 * flips / total:.3f} "
            f"| {100 * type_flips / max(nuclear, 1):.3f} | {delta / total:.4f} |"
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
