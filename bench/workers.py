"""Wall time of `histobatch segment` on one slide set: plain local run vs Dask with 1 and 2 workers.

    python bench/workers.py                       # CMU slide twice (../shared/data), default model
    python bench/workers.py --slides a.svs b.svs --workers 1 2 4

Prints one table and appends it to bench/RESULTS.md with the machine and the date. Each row is a
fresh run into a new output folder (cluster start-up included); the tables of all runs must be
identical, which the script checks.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from results import DATA, publish


def run(slides: list[Path], out: Path, extra: list[str], model: str) -> float:
    command = [sys.executable, "-m", "histobatch", "-q", "segment", *map(str, slides)]
    command += ["-o", str(out), "--model", model, "--no-progress", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started


def table_hash(out: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(out.glob("*/nuclei.parquet")):
        digest.update(pd.read_parquet(path).to_csv(index=False).encode())
    return digest.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slides", nargs="+", type=Path)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--model", default="default")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="histobatch-workers-"))
    slides = args.slides
    if not slides:
        cmu = DATA / "slides" / "cmu-1-small-region.svs"
        if not cmu.exists():
            sys.exit(f"no slides given and {cmu} is missing (set HISTOBATCH_DATA)")
        slides = [cmu, work / "cmu-copy.svs"]
        shutil.copy(cmu, slides[1])
    rows = [("local (no flag)", [], None)] + [
        (f"--cluster local:{n}", ["--cluster", f"local:{n}"], n) for n in args.workers
    ]
    results = []
    for label, extra, _ in rows:
        out = work / f"out{len(results)}"
        seconds = run(slides, out, extra, args.model)
        results.append((label, seconds, table_hash(out)))
        print(f"{label}: {seconds:.1f} s", file=sys.stderr)
    base = (
        next(s for label, s, _ in results if label == "--cluster local:1")
        if 1 in args.workers
        else results[0][1]
    )
    table = ["| run | wall s | speed-up vs 1 worker | table hash |", "|---|---|---|---|"]
    for label, seconds, digest in results:
        table.append(f"| {label} | {seconds:.1f} | {base / seconds:.2f} | {digest} |")
    identical = len({digest for _, _, digest in results}) == 1
    table += ["", f"Tables identical across runs: {'yes' if identical else 'NO'}."]
    slide_names = ", ".join(p.name for p in slides)
    publish("Dask workers", f"Slides: {slide_names}; model {args.model}.", table)
    shutil.rmtree(work, ignore_errors=True)
    if not identical:
        sys.exit("tables differ between runs")


if __name__ == "__main__":
    main()
