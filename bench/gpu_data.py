"""Pack the training and test data into bench/work/data for a machine without ../shared/data.

A lent GPU machine receives ignored folders only through ``carry`` (64 MiB in all). The real data
is 112 MB, 40 MB of which is MoNuSeg's verbose XML; gzipped (``read_monuseg`` reads
``.xml.gz``) everything fits. The layouts are unchanged, so the training configs work with
``HISTOBATCH_DATA=bench/work/data``.

Usage (from the repository root)::

    python bench/gpu_data.py            # or: make gpu-data
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

from results import DATA, HERE

CARRY_LIMIT_MB = 64 * 1.048576  # 64 MiB
COPIED = ("consep4/train", "consep4/test", "cpm15", "monuseg-train/Images")


def folder_mb(folder: Path) -> float:
    """Size of the files under ``folder`` in MB."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def pack(source: Path, target: Path) -> float:
    """Copy the data sets into ``target``, MoNuSeg's annotations gzipped; return the size in MB."""
    for part in COPIED:
        destination = target / part
        if not destination.is_dir():
            shutil.copytree(source / part, destination)
    annotations = target / "monuseg-train" / "Annotations"
    annotations.mkdir(parents=True, exist_ok=True)
    for xml in sorted((source / "monuseg-train" / "Annotations").glob("*.xml")):
        packed = annotations / f"{xml.name}.gz"
        if not packed.is_file():
            with xml.open("rb") as raw, gzip.open(packed, "wb", compresslevel=9) as handle:
                shutil.copyfileobj(raw, handle)
    return folder_mb(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "work" / "data")
    args = parser.parse_args()
    size = pack(args.source, args.out)
    print(f"{args.out}: {size:.1f} MB (carry limit {CARRY_LIMIT_MB:.1f} MB)")
    if size > CARRY_LIMIT_MB:
        raise SystemExit("too large to carry to a lent machine; remove something from it")


if __name__ == "__main__":
    main()
