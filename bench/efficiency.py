"""Pipeline efficiency: end-to-end `segment` throughput over the model's own throughput.

    python bench/efficiency.py                      # CMU slide + a 64x64-crop mosaic, default model
    python bench/efficiency.py --mosaic-base 16     # quicker (4096² px instead of 16384²)

End-to-end: megapixels of tissue on the model grid (summary.json: tissue mm² / model µm/px²) per
second of wall time of a fresh `histobatch segment` process, start-up excluded (the summary's own
runtime). Model only: the same network, batch size, precision and device, forward passes (through
the same Predictor, so normalisation and map conversion count) on in-memory batches of the same tile
shape, counting every input pixel, measured before and after the pipeline runs (the faster counts).
Their ratio is the row ``efficiency`` (the mosaic's, which is all tissue): what tiling margins,
reading, resampling, post-processing, stitching and writing cost. The table also gives each slide's
ceiling, the share of the pixels through the network that are tissue. Appends the table to
bench/RESULTS.md with the machine and the date.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def model_only(
    model: str, tile: int, batch: int, precision: str, repeats: int, device: str
) -> float:
    """Megapixels per second of the Predictor on random in-memory batches of tiles."""
    from histobatch.device import configure_threads, resolve_device
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    device = resolve_device(device)
    if device == "cpu":
        configure_threads(None)
    predictor = Predictor(load_model(model, device), device, precision)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (batch, tile, tile, 3), dtype=np.uint8)
    predictor(pixels)  # warm-up (and CUDA kernel selection)
    started = time.perf_counter()
    for _ in range(repeats):
        predictor(pixels)  # returns numpy: includes the copy back from the device
    seconds = (time.perf_counter() - started) / repeats
    return batch * tile * tile / 1e6 / seconds


def segment(slide: Path, out: Path, model: str, extra: list[str]) -> dict:
    command = [sys.executable, "-m", "histobatch", "-q", "segment", str(slide), "-o", str(out)]
    command += ["--model", model, "--no-progress", "--no-report", "--overwrite", *extra]
    subprocess.run(command, check=True)
    stem = slide.name.split(".")[0]
    return json.loads((out / stem / "summary.json").read_text())


def main() -> None:
    from memory import crops, write_mosaic
    from results import DATA, publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--mosaic-base", type=int, default=64, help="crops per mosaic side")
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--margin", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-cmu", action="store_true", help="only the mosaic")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="histobatch-efficiency-"))
    slides = [] if args.no_cmu else [DATA / "slides" / "cmu-1-small-region.svs"]
    slides.append(write_mosaic(work / "mosaic.tiff", args.mosaic_base, crops()))
    extra = ["--tile-size", str(args.tile_size), "--margin", str(args.margin)]
    extra += ["--batch-size", str(args.batch_size), "--precision", args.precision]
    extra += ["--device", args.device]

    def measure_model() -> float:
        return model_only(
            args.model, args.tile_size, args.batch_size, args.precision, args.repeats, args.device
        )

    # Model-only before and after the pipeline runs; the faster of the two is the limit, so that
    # a slow moment of a shared machine cannot flatter the ratio.
    before = measure_model()
    rows = []
    for slide in slides:
        summary = segment(slide, work / "out", args.model, extra)
        tissue_mpx = summary["tissue_area_mm2"] * 1e6 / summary["model_mpp"] ** 2 / 1e6
        tiles = summary["tiles"]
        run_mpx = tiles["with_tissue"] * tiles["tile_size"] ** 2 / 1e6
        seconds = summary["runtime_s"]
        rows.append((slide.name, tissue_mpx, run_mpx, seconds, summary["timings_s"]))
        print(f"{slide.name}: {tissue_mpx / seconds:.2f} Mpx/s vs {before:.2f}", file=sys.stderr)
    after = measure_model()
    limit = max(before, after)
    table = [
        "| slide | tissue Mpx | Mpx through the model | s | tissue Mpx/s | efficiency "
        "| ceiling (tissue / model px) | where the time went (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, mpx, run_mpx, seconds, timings in rows:
        spent = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in timings.items())
        table.append(
            f"| {name} | {mpx:.1f} | {run_mpx:.1f} | {seconds:.1f} | {mpx / seconds:.2f} "
            f"| {mpx / seconds / limit:.2f} | {mpx / run_mpx:.2f} | {spent} |"
        )
    _, mosaic_mpx, _, mosaic_s, _ = rows[-1]
    table += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| model_only_mpx_per_s | {limit:.2f} (before {before:.2f}, after {after:.2f}) |",
        f"| pipeline_mpx_per_s | {mosaic_mpx / mosaic_s:.2f} |",
        f"| efficiency | {mosaic_mpx / mosaic_s / limit:.2f} |",
    ]
    setup = (
        f"Model {args.model}, tile {args.tile_size} (at most; the grid shares the slide evenly), "
        f"margin {args.margin}, batch {args.batch_size}, precision {args.precision}, device "
        f"{args.device}; mosaic of {args.mosaic_base}x{args.mosaic_base} consep4 crops. Row "
        "`efficiency` is the mosaic's (all tissue); the ceiling column is the share of the pixels "
        "through the model that are tissue (margins, padding and background around tissue)."
    )
    publish("Pipeline efficiency", setup, table)


if __name__ == "__main__":
    main()
