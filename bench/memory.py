"""Peak RSS of `histobatch segment` on mosaics of real H&E tiles of 1x, 4x and 16x the area.

    python bench/memory.py                 # 1x = 32x32 CoNSeP crops (8192² px at 0.25 µm/px)
    python bench/memory.py --base 4        # quick check: 1x = 4x4 crops

The 1x mosaic is 2 x 2 mm, a small biopsy; smaller slides get smaller tiles (the grid shares a slide
evenly among tiles of at most --tile-size), hence less memory, which a smaller 1x would count as
growth.

Mosaics are pyramidal tiled TIFFs written tile by tile with tifffile from the consep4 crops (real
H&E, 40x) in ../shared/data, so building them never holds the whole image. Each size is segmented
in a fresh process with the default model; its peak resident memory is read from the kernel
(``getrusage(RUSAGE_CHILDREN)``). Prints one table with the row ``rss_16x_over_1x`` and appends it
to bench/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import DATA, publish

CROP = 256
MPP = 0.25


def crops() -> list[np.ndarray]:
    from PIL import Image

    folder = DATA / "consep4" / "train" / "Images"
    paths = sorted(folder.glob("*.jpg"))
    if not paths:
        sys.exit(f"no CoNSeP crops in {folder} (set HISTOBATCH_DATA)")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def write_mosaic(path: Path, side: int, tiles: list[np.ndarray]) -> Path:
    """A ``side`` x ``side`` crops mosaic as a pyramidal TIFF, written one 256-px tile at a time."""
    import cv2
    import tifffile

    def level_tiles(level: int):
        step = 2**level
        count = max(1, side // step)
        for row in range(count):
            for col in range(count):
                block = np.zeros((CROP * step, CROP * step, 3), np.uint8)
                for r in range(step):
                    for c in range(step):
                        index = ((row * step + r) * side + col * step + c) % len(tiles)
                        block[r * CROP : (r + 1) * CROP, c * CROP : (c + 1) * CROP] = tiles[index]
                yield (
                    block
                    if step == 1
                    else cv2.resize(block, (CROP, CROP), interpolation=cv2.INTER_AREA)
                )

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        level = 0
        while True:
            count = max(1, side // 2**level)
            res = 1e4 / (MPP * 2**level)
            tif.write(
                level_tiles(level),
                shape=(count * CROP, count * CROP, 3),
                dtype=np.uint8,
                tile=(CROP, CROP),
                photometric="rgb",
                compression="jpeg",
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=1 if level else 0,
            )
            if count == 1 or count * CROP <= 2048:
                break
            level += 1
    return path


def peak_rss_of(command: list[str]) -> tuple[float, float]:
    """Run ``command`` in a fresh child; return (wall s, that child's peak RSS in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("warning: an earlier, larger child hides this run's peak", file=sys.stderr)
    return wall, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=int, default=32, help="crops per side of the 1x mosaic")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    tiles = crops()
    work = Path(tempfile.mkdtemp(prefix="histobatch-memory-"))
    rows = []
    for factor in (1, 4, 16):  # area factors; run smallest first so each peak is its own
        side = args.base * int(round(factor**0.5))
        slide = write_mosaic(work / f"mosaic_{factor}x.tiff", side, tiles)
        command = [sys.executable, "-m", "histobatch", "-q", "segment", str(slide)]
        command += ["-o", str(work / "out"), "--model", args.model, "--device", args.device]
        command += ["--no-progress", "--no-report"]
        wall, rss = peak_rss_of(command)
        megapixels = (side * CROP) ** 2 / 1e6
        rows.append((factor, side * CROP, megapixels, wall, rss))
        print(f"{factor}x: {side * CROP}² px, {wall:.1f} s, peak RSS {rss:.0f} MB", file=sys.stderr)

    table = ["| mosaic | level-0 px | Mpx | wall s | peak RSS MB |", "|---|---|---|---|---|"]
    for factor, size, megapixels, wall, rss in rows:
        table.append(f"| {factor}x | {size}² | {megapixels:.0f} | {wall:.1f} | {rss:.0f} |")
    ratio = rows[-1][4] / rows[0][4]
    table += ["", "| metric | value |", "|---|---|", f"| rss_16x_over_1x | {ratio:.2f} |"]
    table.append(f"| rss_16x_over_4x | {rows[-1][4] / rows[1][4]:.2f} |")
    setup = f"Mosaics of consep4 crops at {MPP} µm/px, model {args.model}, device {args.device}."
    publish("Memory scaling", setup, table)


if __name__ == "__main__":
    main()
