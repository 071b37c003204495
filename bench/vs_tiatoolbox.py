"""histobatch against TIAToolbox's nucleus instance segmentation engine, same slide, same network.

    make bench-tiatoolbox            # builds bench/work/tia-venv once, then runs this
    python bench/vs_tiatoolbox.py --tia-python PATH/TO/tia-venv/bin/python

Both engines run histobatch's default network (TIAToolbox through the wrapper in
``tiatoolbox_engine.py``, so the cost per pixel of the model is the same) on the CMU slide, on the
same device, one after the other. TIAToolbox runs twice: with histobatch's tile size and margin
(equal model cost and the same context per pixel, so only the engines differ: the row
``speedup_vs_tiatoolbox``) and with its usual nucleus patch geometry (256 px patches keeping their
central 164 px, the HoVer-Net configuration its nucleus models and examples use, batch 8; less
context per pixel, so other nuclei: the row ``speedup_vs_tiatoolbox_usual_patches``).
Wall times exclude start-up and model loading on both sides. Appends the table to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_histobatch(slide: Path, out: Path, args) -> dict:
    """Wall time and where it went for ``histobatch segment`` with its defaults."""
    command = [sys.executable, "-m", "histobatch", "-q", "segment", str(slide), "-o", str(out)]
    command += ["--no-progress", "--no-report", "--overwrite", "--device", args.device]
    command += ["--tile-size", str(args.tile_size), "--margin", str(args.margin)]
    command += ["--batch-size", str(args.batch_size)]
    subprocess.run(command, check=True)
    summary = json.loads((out / slide.name.split(".")[0] / "summary.json").read_text())
    return {
        "wall_s": summary["runtime_s"],
        "nuclei": summary["nucleus_count"],
        "tiles": summary["tiles"]["with_tissue"],
        "tile": summary["tiles"]["tile_size"],
        "breakdown_s": summary["timings_s"],
    }


def run_tiatoolbox(
    python: str, slide: Path, tile: int, margin: int, batch: int, device: str, out: Path
) -> dict:
    """Wall time and where it went for TIAToolbox's engine (in its own environment)."""
    command = [python, str(HERE / "tiatoolbox_engine.py"), "--slide", str(slide)]
    command += ["--tile-size", str(tile), "--margin", str(margin), "--batch-size", str(batch)]
    command += ["--device", device, "--json", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> None:
    from results import DATA, publish

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tia-python", default=str(HERE / "work" / "tia-venv" / "bin" / "python"))
    parser.add_argument("--slide", type=Path, default=DATA / "slides" / "cmu-1-small-region.svs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-size", type=int, default=2048)
    parser.add_argument("--margin", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=1)
    args = parser.parse_args()
    if not Path(args.tia_python).exists():
        sys.exit(f"no TIAToolbox environment at {args.tia_python}: run `make bench-tia-venv`")

    work = Path(tempfile.mkdtemp(prefix="histobatch-vs-tia-"))
    ours = run_histobatch(args.slide, work / "hb", args)
    print(f"histobatch: {ours['wall_s']:.1f} s", file=sys.stderr)
    usual = run_tiatoolbox(
        args.tia_python, args.slide, 256, 46, 8, args.device, work / "tia-usual.json"
    )
    print(f"TIAToolbox 256/164: {usual['wall_s']:.1f} s", file=sys.stderr)
    same = run_tiatoolbox(
        args.tia_python,
        args.slide,
        args.tile_size,
        args.margin,
        args.batch_size,
        args.device,
        work / "tia-same.json",
    )
    print(f"TIAToolbox same tiles: {same['wall_s']:.1f} s", file=sys.stderr)

    def spent(breakdown: dict) -> str:
        shown = [(k.removesuffix("_s"), v) for k, v in breakdown.items() if v >= 0.05]
        return ", ".join(f"{k} {v:.1f}" for k, v in shown)

    table = [
        "| engine | tiling | patches | nuclei | wall s | where the time went (s) |",
        "|---|---|---|---|---|---|",
        f"| histobatch | tile ≤ {args.tile_size}, margin {args.margin} (fitted: {ours['tile']}), "
        f"batch {args.batch_size} | {ours['tiles']} | {ours['nuclei']} | {ours['wall_s']:.1f} "
        f"| {spent(ours['breakdown_s'])} |",
        f"| TIAToolbox {usual['version']} | patch 256 → 164, batch 8 | {usual['tiles']} "
        f"| {usual['nuclei']} | {usual['wall_s']:.1f} | {spent(usual['breakdown_s'])} |",
        f"| TIAToolbox {same['version']} | patch {args.tile_size} → "
        f"{args.tile_size - 2 * args.margin}, batch {args.batch_size} | {same['tiles']} "
        f"| {same['nuclei']} | {same['wall_s']:.1f} | {spent(same['breakdown_s'])} |",
        "",
        "| metric | value |",
        "|---|---|",
        f"| speedup_vs_tiatoolbox | {same['wall_s'] / ours['wall_s']:.2f}x |",
        f"| speedup_vs_tiatoolbox_usual_patches | {usual['wall_s'] / ours['wall_s']:.2f}x |",
    ]
    setup = (
        f"Slide {args.slide.name}, device {args.device}, histobatch's default network in both "
        "engines (TIAToolbox through bench/tiatoolbox_engine.py), at 0.5 µm/px, precision auto."
    )
    publish("Against TIAToolbox", setup, table)


if __name__ == "__main__":
    main()
