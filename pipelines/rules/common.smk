# Slide list and helpers shared by the rules. The slide list comes from config["slides"]: a glob
# (or a list of globs) of slide files, or a sample sheet TSV (columns slide_id, path, optional mpp;
# relative paths are relative to the sheet).

import glob
import re
from pathlib import Path

import pandas as pd

from histobatch.pipeline import slide_id_of

OUT = config["out"]


def load_slides(config) -> dict:
    """``{slide id: {"path": ..., "mpp": float or None}}`` from the config's ``slides``."""
    source = config["slides"]
    if isinstance(source, str) and source.endswith((".tsv", ".txt")):
        sheet = pd.read_csv(source, sep="\t", dtype={"slide_id": str, "path": str})
        validate(sheet, "../schemas/samples.schema.yaml")
        repeated = sorted(set(sheet.slide_id[sheet.slide_id.duplicated()]))
        if repeated:
            raise ValueError(f"{source}: slide_id repeated: {', '.join(repeated)}")
        slides = {}
        for row in sheet.itertuples():
            path = Path(row.path)
            if not path.is_absolute():
                path = Path(source).parent / path
            mpp = getattr(row, "mpp", None)
            slides[row.slide_id] = {"path": str(path), "mpp": None if pd.isna(mpp) else mpp}
        return slides
    patterns = [source] if isinstance(source, str) else list(source)
    slides = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            slide_id = slide_id_of(path)
            if slide_id in slides and slides[slide_id]["path"] != path:
                raise ValueError(
                    f"{path} and {slides[slide_id]['path']} would both be slide '{slide_id}'; "
                    "rename one or use a sample sheet with distinct slide_id values"
                )
            slides[slide_id] = {"path": path, "mpp": None}
    return slides


SLIDES = load_slides(config)


wildcard_constraints:
    slide="|".join(map(re.escape, SLIDES)) if SLIDES else "[^/]+",


def slide_path(wildcards) -> str:
    return SLIDES[wildcards.slide]["path"]


def segment_options(wildcards) -> str:
    """Options of ``histobatch segment`` from the config (and the sheet's µm/px)."""
    options = [
        f"--model {config['model']}",
        f"--device {config['device']}",
        f"--precision {config['precision']}",
        f"--tile-size {config['tile_size']}",
        f"--batch-size {config['batch_size']}",
    ]
    if config.get("margin") is not None:
        options.append(f"--margin {config['margin']}")
    mpp = SLIDES[wildcards.slide]["mpp"]
    if mpp:
        options.append(f"--mpp {mpp}")
    if config.get("extra_args"):
        options.append(config["extra_args"])
    return " ".join(options)


def cohort_outputs() -> list:
    return [f"{OUT}/cohort.csv", f"{OUT}/cohort.parquet", f"{OUT}/cohort.png"]
