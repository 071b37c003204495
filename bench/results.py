"""Shared by the benchmark scripts: the machine line and a dated table appended to RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
#: The real data (read-only): $HISTOBATCH_DATA, else ../shared/data beside the repository.
DATA = Path(os.environ.get("HISTOBATCH_DATA", HERE.parent.parent / "shared" / "data"))


def machine() -> str:
    """Cores and CPU model, OS, Python, torch and whether CUDA is there."""
    import torch

    cpu = "?"
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return (
        f"{os.cpu_count()} cores ({cpu}), {platform.system()}, Python {platform.python_version()}, "
        f"torch {torch.__version__}, CUDA {'yes' if torch.cuda.is_available() else 'no'}"
    )


def publish(title: str, setup: str, table: list[str]) -> str:
    """Print a dated section (title, machine + ``setup`` line, ``table`` lines), append it to
    bench/RESULTS.md and return it."""
    lines = [
        f"### {title}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {machine()}. {setup}",
        "",
        *table,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    with open(RESULTS, "a") as results:
        results.write("\n" + text)
    return text
