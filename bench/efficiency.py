"""Pipeline efficiency: end-to-end `segment` throughput over the model's own throughput.

    python bench/efficiency.py                      # CMU slide + a 16x16-crop mosaic, default model
    python bench/efficiency.py --mosaic-base 4      # quicker

End-to-end: megapixels of tissue on the model grid (summary.json: tissue mm² / model µm/px²) per
second of wall time of a fresh `histobatch segment` process, start-up excluded (the summary's own
runtime). Model only: the same network, batch size, precision and device, forward passes (through
the same Predictor, so normalisation and map conversion count) on in-memory batches of the same tile
shape, counting every input pixel. Their ratio is the row ``efficiency``: what tiling margins,
reading, resampling, post-processing, stitching and writing cost. Appends the table to
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
    parser.add_argument("--mosaic-base", type=int, default=16)
    parser.add_argument("--tile-size", type=int, default=1280)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="histobatch-efficiency-"))
    slides = [DATA / "slides" / "cmu-1-small-region.svs"]
    slides.append(write_mosaic(work / "mosaic.tiff", args.mosaic_base, crops()))
    extra = ["--tile-size", str(args.tile_size), "--batch-size", str(args.batch_size)]
    extra += ["--precision", args.precision, "--device", args.device]
    limit = model_only(
        args.model, args.tile_size, args.batch_size, args.precision, args.repeats, args.device
    )
    rows = []
    for slide in slides:
        summary = segment(slide, work / "out", args.model, extra)
        tissue_mpx = summary["tissue_area_mm2"] * 1e6 / summary["model_mpp"] ** 2 / 1e6
        seconds = summary["runtime_s"]
        throughput = tissue_mpx / seconds
        rows.append((slide.name, tissue_mpx, seconds, throughput, summary["timings_s"]))
        print(f"{slide.name}: {throughput:.2f} Mpx/s vs model {limit:.2f}", file=sys.stderr)
    total = sum(r[1] for r in rows) / sum(r[2] for r in rows)
    table = [
        "| slide | tissue Mpx (model grid) | s | Mpx/s | where the time went (s) |",
        "|---|---|---|---|---|",
    ]
    for name, mpx, seconds, throughput, timings in rows:
        spent = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in timings.items())
        table.append(f"| {name} | {mpx:.1f} | {seconds:.1f} | {throughput:.2f} | {spent} |")
    table += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| model_only_mpx_per_s | {limit:.2f} |",
        f"| pipeline_mpx_per_s | {total:.2f} |",
        f"| efficiency | {total / limit:.2f} |",
    ]
    setup = (
        f"Model {args.model}, tile {args.tile_size}, batch {args.batch_size}, "
        f"precision {args.precision}, device {args.device}."
    )
    publish("Pipeline efficiency", setup, table)


if __name__ == "__main__":
    main()
