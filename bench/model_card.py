"""The numbers of the README's model card, measured the way users run the model.

    python bench/model_card.py --model default            # the packaged model
    python bench/model_card.py --model runs/v1/model      # a candidate
    python bench/model_card.py --model default --skip-test   # validation sets and CMU only
    python bench/model_card.py --skip-test --crops docs/cmu-crops.jpg   # + CMU image | contours
    python bench/model_card.py --skip-test --skip-cmu --flips 4   # test-time flips, validation

Rows (every one through `segment`'s code with its defaults, via `histobatch evaluate`):
- consep4 test (224 crops; cite Graham et al. 2019) -- only for the README table, never to choose;
- consep4 validation tiles of the recipe split, and four held-out MoNuSeg images of organs CoNSeP
  lacks (bladder, stomach, prostate, kidney; Kumar et al.) -- the "other organs" check;
- the CMU-1 small region (OpenSlide test data, CC0, 20x skin): `histobatch segment` wall time of a
  fresh process, nuclei, median nucleus area (µm²) and type fractions.

Appends the tables to bench/RESULTS.md. Run alone (nothing else on the cores) for the timings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import DATA, publish

KEYS = ("dice", "aji", "dq", "sq", "pq", "f_d")
TYPES = ("other", "inflammatory", "epithelial", "spindle")
OTHER_ORGANS = ["TCGA-DK-A2I6-*", "TCGA-KB-A93J-*", "TCGA-G9-6336-*", "TCGA-HE-7128-*"]


def record_test_metrics(model: str, metrics: dict) -> None:
    """Write the consep4 test scores into the model folder's ``config.json`` (``metrics.test``),
    where the model card test checks that `evaluate` reproduces them."""
    from histobatch.model import resolve_model_path

    path = resolve_model_path(model) / "config.json"
    config = json.loads(path.read_text())
    keep = {k: v for k, v in metrics.items() if k not in ("pixel_confusion", "nucleus_confusion")}
    keep["data"] = "consep4/test: 224 crops of 256x256 (40x) from the 14 CoNSeP test tiles"
    keep["protocol"] = (
        "histobatch evaluate = segment's defaults on each crop (mirrored beyond its border); "
        "PQ/AJI/Dice per crop averaged; F_d/F_c pooled, centroids paired within 3 µm"
    )
    config.setdefault("metrics", {})["test"] = keep
    path.write_text(json.dumps(config, indent=2) + "\n")


def evaluate_rows(model: str, skip_test: bool, record: bool = False, flips: int = 1) -> list[str]:
    """One table row per evaluation set (``record``: the test scores go into the model folder;
    ``flips``: test-time flipped copies, see :class:`histobatch.inference.Predictor`)."""
    from padding import validation_folder

    from histobatch.evaluate import EvaluateSettings, evaluate_dataset
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    predictor = Predictor(load_model(model), "cpu", "auto", flips=flips)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sets = [
            ("consep4 validation tiles", validation_folder(work, 0.15, 0), EvaluateSettings()),
            (
                "other organs (4 MoNuSeg images)",
                DATA / "monuseg-train-extra",
                EvaluateSettings(class_map="none", data_mpp=0.2527, include=OTHER_ORGANS),
            ),
        ]
        if not skip_test:
            sets.insert(0, ("consep4 test", DATA / "consep4" / "test", EvaluateSettings()))
        for label, data, settings in sets:
            metrics = evaluate_dataset(data, predictor, work / "out" / label[:6], settings, False)
            if record and label == "consep4 test":
                record_test_metrics(model, metrics)
            f_c = metrics.get("f_c", {})
            cells = [f"{metrics[k]:.3f}" for k in KEYS]
            cells += [f"{f_c[t]:.3f}" if t in f_c else "–" for t in TYPES]
            cells.append(f"{metrics['miou']:.3f}" if "miou" in metrics else "–")
            rows.append(f"| {label} | {metrics['n_images']} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    return rows


def save_crops(folder: Path, path: Path, count: int = 3, size: int = 256) -> None:
    """The ``count`` densest crops of a segmented slide as rows of image | contours (JPEG)."""
    import numpy as np
    from PIL import Image

    from histobatch.report import full_resolution_crops

    summary = json.loads((folder / "summary.json").read_text())
    plain = full_resolution_crops(folder, summary, size, count, contours=False)
    drawn = full_resolution_crops(folder, summary, size, count)
    gap = np.full((size, 8, 3), 255, np.uint8)
    rows = [np.hstack([a[0], gap, b[0]]) for a, b in zip(plain, drawn, strict=True)]
    sheet = np.vstack(
        [np.vstack([row, np.full((8, row.shape[1], 3), 255, np.uint8)]) for row in rows]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet[:-8]).save(path, quality=88)
    print(f"crops written to {path}")


def cmu_row(model: str, crops: Path | None = None) -> str:
    """`histobatch segment` on the CMU slide in a fresh process: time, counts, areas, types
    (``crops``: also save its densest crops as image | contours there)."""
    import pandas as pd

    slide = DATA / "slides" / "cmu-1-small-region.svs"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        command = [str(Path(sys.executable).parent / "histobatch"), "segment", str(slide)]
        command += ["--model", model, "-o", tmp, "--no-progress"]
        subprocess.run(command, check=True, capture_output=True)
        wall = time.perf_counter() - started
        folder = Path(tmp) / slide.stem
        summary = json.loads((folder / "summary.json").read_text())
        table = pd.read_parquet(folder / "nuclei.parquet", columns=["area_um2", "type"])
        if crops:
            save_crops(folder, crops)
    fractions = table["type"].value_counts(normalize=True)
    cells = [f"{wall:.0f}", str(len(table)), f"{table.area_um2.median():.1f}"]
    cells += [f"{100 * fractions.get(t, 0.0):.0f} %" for t in TYPES]
    cells.append(f"{summary['tissue_area_mm2']:.2f}")
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--skip-test", action="store_true")
    parser.add_argument("--skip-cmu", action="store_true")
    parser.add_argument(
        "--record", action="store_true", help="write the test scores into MODEL/config.json"
    )
    parser.add_argument("--crops", type=Path, help="save CMU crops (image | contours) here")
    parser.add_argument(
        "--flips", type=int, default=1, choices=(1, 2, 4), help="test-time flips (evaluation sets)"
    )
    args = parser.parse_args()
    if args.flips > 1 and (args.record or not args.skip_cmu):
        parser.error("--flips is for the evaluation rows only: use it with --skip-cmu, no --record")

    from histobatch.device import configure_threads
    from histobatch.model import load_model

    configure_threads(None)
    config = load_model(args.model).config
    rows = [
        "| set | images | " + " | ".join(KEYS) + " | F_c " + " | F_c ".join(TYPES) + " | mIoU |",
        "|---|---|" + "---|" * (len(KEYS) + len(TYPES) + 1),
        *evaluate_rows(args.model, args.skip_test, args.record, args.flips),
    ]
    if not args.skip_cmu:
        rows += [
            "",
            "| CMU segment wall s | nuclei | median area µm² | "
            + " | ".join(TYPES)
            + " | tissue mm² |",
            "|---|---|---|---|---|---|---|---|",
            cmu_row(args.model, args.crops),
        ]
        print(rows[-1])
    publish(
        f"Model card: {config.name} {config.version}"
        + (f", {args.flips} test-time flips" if args.flips > 1 else ""),
        f"Model {args.model} ({config.mpp} µm/px, pixel_shuffle {config.pixel_shuffle}), "
        "every set through segment's defaults (histobatch evaluate); CMU: a fresh "
        "`histobatch segment` process.",
        rows,
    )


if __name__ == "__main__":
    main()
