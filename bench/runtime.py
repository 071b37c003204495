"""Wall time and agreement of `histobatch segment --runtime torch` vs `--runtime onnx`.

    python bench/runtime.py                       # CMU slide (../shared/data), default model
    python bench/runtime.py --slide a.svs --repeats 3 --threads 2

Every run is a fresh process into a new output folder. The ONNX export is made once beforehand
into a cache folder of this benchmark (timed on its own line), so the ONNX rows time inference as
a user's second and later runs see it. Rows: torch at fp32 (the reference), torch at
`--precision auto` when that is not fp32 on this CPU (bf16 with native support), and onnx (fp32).
Agreement: the share of the reference's nuclei with an ONNX (or torch auto) nucleus within 2 µm,
one to one (mutual nearest centroids). Prints one table and appends it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from results import DATA, publish

#: Centroids closer than this (µm) are the same nucleus.
MATCH_UM = 2.0


def segment(slide: Path, out: Path, model: str, extra: list[str], env: dict) -> float:
    """Wall time of one `histobatch segment` in a fresh process."""
    command = [sys.executable, "-m", "histobatch", "-q", "segment", str(slide), "-o", str(out)]
    command += ["--model", model, "--no-progress", "--no-report", *extra]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


def export_once(model: str, env: dict) -> float:
    """Seconds to export the model into the ONNX cache (what the first onnx run pays once)."""
    code = (
        "from histobatch.model import load_model; from histobatch.onnx_predictor import "
        f"cached_onnx; cached_onnx(load_model({model!r}))"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - started


def matched_share(reference: pd.DataFrame, other: pd.DataFrame, tol_um: float) -> float:
    """Share of ``reference`` nuclei with a mutual nearest ``other`` nucleus within ``tol_um``."""
    from scipy.spatial import cKDTree

    if len(reference) == 0:
        return float("nan")
    if len(other) == 0:
        return 0.0
    a = reference[["x_um", "y_um"]].to_numpy()
    b = other[["x_um", "y_um"]].to_numpy()
    dist_ab, ab = cKDTree(b).query(a)
    _, ba = cKDTree(a).query(b)
    mutual = (ba[ab] == np.arange(len(a))) & (dist_ab <= tol_um)
    return float(mutual.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, default=DATA / "slides" / "cmu-1-small-region.svs")
    parser.add_argument("--model", default="default")
    parser.add_argument("--repeats", type=int, default=1, help="Runs per row (median reported).")
    parser.add_argument("--threads", type=int, default=None, help="--threads for every run.")
    args = parser.parse_args()
    if not args.slide.exists():
        sys.exit(f"{args.slide} is missing (set HISTOBATCH_DATA or pass --slide)")

    from histobatch.device import autocast_dtype

    work = Path(tempfile.mkdtemp(prefix="histobatch-runtime-"))
    env = {**os.environ, "HISTOBATCH_CACHE_DIR": str(work / "cache")}
    threads = ["--threads", str(args.threads)] if args.threads else []
    rows = [("torch", "fp32")]
    if autocast_dtype("cpu", "auto") is not None:
        rows.append(("torch", "auto"))
    rows.append(("onnx", "fp32"))
    export_s = export_once(args.model, env)
    print(f"ONNX export into the cache: {export_s:.1f} s", file=sys.stderr)

    results = []
    for runtime, precision in rows:
        seconds, table = [], None
        for repeat in range(args.repeats):
            out = work / f"{runtime}-{precision}-{repeat}"
            extra = ["--runtime", runtime, "--precision", precision, *threads]
            seconds.append(segment(args.slide, out, args.model, extra, env))
            table = pd.read_parquet(next(out.glob("*/nuclei.parquet")))
        results.append((runtime, precision, statistics.median(seconds), table))
        print(f"{runtime} {precision}: {statistics.median(seconds):.1f} s", file=sys.stderr)

    reference = results[0][3]
    header = f"| runtime | precision | wall s (median of {args.repeats}) | nuclei |"
    table_lines = [
        header + f" torch fp32 nuclei matched within {MATCH_UM:g} µm |",
        "|---|---|---|---|---|",
    ]
    for runtime, precision, wall, table in results:
        share = matched_share(reference, table, MATCH_UM)
        table_lines.append(
            f"| {runtime} | {precision} | {wall:.1f} | {len(table):,} | {100 * share:.1f} % |"
        )
    table_lines += ["", f"One-off ONNX export into the cache: {export_s:.1f} s (not in the rows)."]
    setup = (
        f"Slide: {args.slide.name}; model {args.model}; `histobatch segment --no-report`, fresh "
        f"process per run; threads: {args.threads or 'all cores'}."
    )
    publish("torch vs ONNX runtime", setup, table_lines)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
