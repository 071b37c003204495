"""The cohort view of an output folder: one row per slide, a table file pair and a picture.

``histobatch aggregate OUT`` reads every finished slide's ``summary.json`` plus what is known about
slides that did not finish (``failures.json`` of plain runs, ``.<slide>.partial`` folders left by
interrupted ones) and writes ``cohort.csv``, ``cohort.parquet`` and ``cohort.png``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from histobatch.layout import SUMMARY_NAME, slide_id_of
from histobatch.stats import COHORT_NAME, cohort_row, temporary_name

logger = logging.getLogger(__name__)

COHORT_PARQUET_NAME = "cohort.parquet"
COHORT_PLOT_NAME = "cohort.png"
FAILURES_NAME = "failures.json"


@dataclass
class Cohort:
    """What :func:`aggregate` wrote."""

    table: Path
    parquet: Path
    plot: Path
    finished: int
    failed: int


def cohort_rows(out_dir: Path) -> list[dict]:
    """Rows for every finished slide (``status`` ``done``) and every known failure.

    Failed or unfinished slides get ``status`` ``failed``/``unfinished`` and an ``error``; their
    numbers are empty. Rows are sorted by slide id.
    """
    out_dir = Path(out_dir)
    rows: dict[str, dict] = {}
    for summary_path in sorted(out_dir.glob(f"*/{SUMMARY_NAME}")):
        if summary_path.parent.name.startswith("."):
            continue
        try:
            summary = json.loads(summary_path.read_text())
            row = cohort_row(summary)
        except (OSError, ValueError, KeyError) as exc:
            logger.warning("%s: unreadable summary skipped (%s)", summary_path, exc)
            continue
        rows[row["slide"]] = {"status": "done", "error": None, **row}
    failures_path = out_dir / FAILURES_NAME
    if failures_path.is_file():
        try:
            failures = json.loads(failures_path.read_text())
        except ValueError:
            failures = []
        for failure in failures:
            slide = slide_id_of(failure["slide"])
            if slide not in rows:
                rows[slide] = {
                    "status": "failed",
                    "error": failure["error"],
                    "slide": slide,
                    "path": failure["slide"],
                }
    for partial in sorted(out_dir.glob(".*.partial")):
        slide = partial.name[1 : -len(".partial")]
        if slide not in rows:
            running = _being_segmented(out_dir, slide)
            rows[slide] = {
                "status": "running" if running else "unfinished",
                "error": running or f"interrupted; rerun to finish it ({partial})",
                "slide": slide,
            }
    return [rows[slide] for slide in sorted(rows)]


def _being_segmented(out_dir: Path, slide: str) -> str | None:
    """Who holds the slide's lock (a live run), or ``None``."""
    from histobatch.locking import SlideBusy, SlideLock

    try:
        SlideLock(out_dir, slide).acquire().release()
    except SlideBusy as busy:
        return f"being segmented by {busy.holder}"
    except OSError:
        return None
    return None


def write_cohort_tables(out_dir: str | Path, parquet: bool = True):
    """Rewrite ``cohort.csv`` (and ``cohort.parquet``) from :func:`cohort_rows`; return the frame.

    Runs sharing ``out_dir`` take turns (``OUT/.cohort.lock``), so the table written last holds
    every slide finished by then; each file is written under a temporary name and renamed.
    """
    import pandas as pd

    from histobatch.locking import waiting_lock

    out_dir = Path(out_dir)
    with waiting_lock(out_dir / ".cohort.lock"):
        rows = cohort_rows(out_dir)
        frame = pd.DataFrame(rows, columns=None if rows else ["slide", "status", "error"])
        front = ["slide", "status"]
        frame = frame[front + [c for c in frame.columns if c not in front]]
        writers = [(out_dir / COHORT_NAME, lambda p: frame.to_csv(p, index=False))]
        if parquet:
            writers.append((out_dir / COHORT_PARQUET_NAME, lambda p: frame.to_parquet(p)))
        for path, write in writers:
            temporary = temporary_name(path)
            try:
                write(temporary)
                os.replace(temporary, path)
            finally:
                temporary.unlink(missing_ok=True)
    return frame


def aggregate(out_dir: str | Path) -> Cohort:
    """Write ``cohort.csv``, ``cohort.parquet`` and ``cohort.png`` for the slides in ``out_dir``.

    Parameters
    ----------
    out_dir
        An output folder of ``histobatch segment`` (one sub-folder per slide).

    Returns
    -------
    Cohort
        The paths written and the numbers of finished and failed slides.
    """
    from histobatch.errors import HistobatchError
    from histobatch.plots import plot_cohort_composition

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise HistobatchError("output folder not found; pass the -o folder of segment", out_dir)
    frame = write_cohort_tables(out_dir)
    plot = out_dir / COHORT_PLOT_NAME
    plot_cohort_composition(frame, plot)
    from histobatch.report import write_cohort_report

    write_cohort_report(out_dir, frame, plot)
    finished = int((frame["status"] == "done").sum())
    return Cohort(
        out_dir / COHORT_NAME, out_dir / COHORT_PARQUET_NAME, plot, finished, len(frame) - finished
    )
