"""Plain images: what should lie beyond their border? ``segment`` on small images (crops, fields of
view) with the image mirrored beyond its border, with white (glass) there, and the old
``evaluate`` shortcut (one tile, no margin), scored with ``histobatch evaluate``'s metrics.

    python bench/padding.py                       # default model, consep4 validation tiles
    python bench/padding.py --model runs/v1/model --split test

Validation tiles are those the training recipe holds out (consep4 train split by tile with the
recipe's seed and fraction), so the choice is not made on the test split. Appends the table to
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from results import DATA, publish

KEYS = ("dice", "aji", "dq", "sq", "pq", "f_d")


def validation_folder(work: Path, val_fraction: float, seed: int) -> Path:
    """A consep4-layout folder of symlinks to the validation tiles' crops."""
    from histobatch.train.datasets import read_dataset, split_by_group

    source = DATA / "consep4" / "train"
    _, val = split_by_group(read_dataset("consep", source, "identity"), val_fraction, seed)
    folder = work / "val"
    for sub in ("Images", "Labels"):
        (folder / sub).mkdir(parents=True)
    for sample in val:
        image = next((source / "Images").glob(f"{sample.name}.*"))
        (folder / "Images" / image.name).symlink_to(image)
        (folder / "Labels" / f"{sample.name}.mat").symlink_to(
            source / "Labels" / f"{sample.name}.mat"
        )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--split", choices=["val", "test"], default="val")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import histobatch.slide as slide_module
    from histobatch.device import configure_threads
    from histobatch.evaluate import EvaluateSettings, evaluate_dataset
    from histobatch.inference import Predictor
    from histobatch.model import load_model

    configure_threads(None)
    predictor = Predictor(load_model(args.model), "cpu", "auto")
    config = predictor.model.config
    rows = [
        "| variant | " + " | ".join(KEYS) + " | F_c mean | runtime s |",
        "|---|" + "---|" * (len(KEYS) + 2),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = (
            validation_folder(work, args.val_fraction, args.seed)
            if args.split == "val"
            else DATA / "consep4" / "test"
        )
        crop_side = round(256 * 0.25 / config.mpp)
        one_tile = -(-crop_side // config.size_multiple) * config.size_multiple
        variants = [
            ("segment, mirrored beyond the border", "reflect", EvaluateSettings()),
            ("segment, white beyond the border", "white", EvaluateSettings()),
            (
                f"one tile of {one_tile} px, no margin (old evaluate)",
                "white",
                EvaluateSettings(margin=0, tile_size=one_tile),
            ),
        ]
        for label, outside, settings in variants:
            slide_module.PLAIN_IMAGE_OUTSIDE = outside
            metrics = evaluate_dataset(data, predictor, work / label[:7], settings, False)
            f_c = [v for v in metrics["f_c"].values() if v == v]
            rows.append(
                f"| {label} | "
                + " | ".join(f"{metrics[k]:.3f}" for k in KEYS)
                + f" | {sum(f_c) / len(f_c):.3f} | {metrics['runtime_s']:.0f} |"
            )
            print(rows[-1], flush=True)
    publish(
        "Plain images: what lies beyond the border",
        f"Model {args.model} ({config.name} {config.version}, {config.mpp} µm/px), consep4 "
        f"{'validation tiles of the recipe split' if args.split == 'val' else 'test'} "
        f"({data.name}), segment's defaults unless stated.",
        rows,
    )


if __name__ == "__main__":
    main()
