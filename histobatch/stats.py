"""Per-slide nucleus statistics (``summary.json``) and the cohort table over slides."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from histobatch.layout import SUMMARY_NAME as SUMMARY_NAME  # re-exported for older callers

COHORT_NAME = "cohort.csv"


def type_statistics(
    type_ids: np.ndarray, areas_um2: np.ndarray, class_names: list[str], tissue_mm2: float
) -> dict[str, dict[str, float]]:
    """Count, fraction, density (per mm² of tissue) and mean area of every nucleus type.

    Examples
    --------
    >>> stats = type_statistics(np.array([1, 1, 2]), np.array([10.0, 20.0, 30.0]),
    ...                         ["background", "a", "b"], tissue_mm2=0.5)
    >>> stats["a"]["count"], stats["a"]["density_per_mm2"], stats["b"]["mean_area_um2"]
    (2, 4.0, 30.0)
    """
    total = len(type_ids)
    result = {}
    for type_id, name in enumerate(class_names):
        if type_id == 0:
            continue
        selected = type_ids == type_id
        count = int(selected.sum())
        result[name] = {
            "count": count,
            "fraction": count / total if total else 0.0,
            "density_per_mm2": count / tissue_mm2 if tissue_mm2 > 0 else 0.0,
            "mean_area_um2": float(areas_um2[selected].mean()) if count else None,
        }
    return result


def temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` unique to this process, for write-then-rename.

    Concurrent runs writing the same file (``cohort.csv``, ``failures.json``) each rename their own
    complete copy into place, so a reader never sees a half-written file.
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON under a temporary name, then rename."""
    temporary = temporary_name(path)
    try:
        temporary.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def cohort_row(summary: dict[str, Any]) -> dict[str, Any]:
    """Flatten one slide's summary into a cohort-table row."""
    row: dict[str, Any] = {
        "slide": summary["slide_id"],
        "path": summary["slide_path"],
        "mpp": summary["mpp"],
        "tissue_mm2": summary["tissue_area_mm2"],
        "nuclei": summary["nucleus_count"],
        "nuclei_per_mm2": summary["nucleus_density_per_mm2"],
    }
    for name, stats in summary["types"].items():
        row[f"{name}_count"] = stats["count"]
        row[f"{name}_fraction"] = stats["fraction"]
        row[f"{name}_per_mm2"] = stats["density_per_mm2"]
        row[f"{name}_mean_area_um2"] = stats["mean_area_um2"]
    row["model"] = summary["model"]["name"]
    row["runtime_s"] = summary["runtime_s"]
    return row
