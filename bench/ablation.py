"""The recipe's ablations: with vs without augmentation and with vs without the pre-training stage.

Trains three variants of one training config at the same budget through the CLI, evaluates each
final model on the test split with ``histobatch evaluate`` and appends a table to RESULTS.md:

- ``recipe``: the config as written (pre-training → heads → fine-tuning, its augmentation);
- ``no-augmentation``: the same with ``augment: none`` (random crops only);
- ``no-pretraining``: the same without the pre-training stage (the CoNSeP stages start from a
  randomly initialised network; the heads and fine-tuning epochs are unchanged);
- ``contact-weight`` (not run by default): the recipe with the separation loss weighted up where
  touching nuclei meet (``contact_weight``, see :func:`histobatch.targets.contact_pixels`);
- ``no-added-data`` (not run by default; for ``examples/train_mixed.yaml``): the recipe without
  the training images of the sets added to the project's data later (:data:`ADDED_SETS`: the
  other 17 MoNuSeg images and TNBC), i.e. consep4, MoNuSeg's first 13 images and CPM-15 only.
  Validation-only datasets stay, so the held-out organs are scored in both.

Every variant keeps the config's seed, crop size and learning rates; ``--finetune-epochs`` shortens
the last stage of all of them equally (the one-cycle schedule is fitted to it). Runs are resumable:
run the same command again after an interruption. Alone on the machine, the default recipe with 20
fine-tuning epochs took 20-33 min per variant on 2 CPU cores (fp32).

Usage (from bench/)::

    python ablation.py --finetune-epochs 20
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from results import DATA, HERE, publish

from histobatch.train.recipe import load_train_config

VARIANTS = ("recipe", "no-augmentation", "no-pretraining", "contact-weight", "no-added-data")
#: Data folders added to ../shared/data after the first recipe (see ``no-added-data``).
ADDED_SETS = ("monuseg-train-extra", "tnbc")
DEFAULT_VARIANTS = VARIANTS[:3]
COLUMNS = ("dice", "aji", "dq", "sq", "pq", "f_d", "miou")
TYPES = ("other", "inflammatory", "epithelial", "spindle")


def variant_config(
    base: Path, variant: str, out: Path, finetune_epochs: int | None, contact_weight: float = 4.0
) -> dict:
    """The training config of ``variant``, with absolute paths, as a mapping."""
    config = asdict(load_train_config(base, out=str(out)))  # paths resolved as `train` does
    if finetune_epochs:
        config["stages"][-1]["epochs"] = finetune_epochs
    if variant == "no-augmentation":
        config["augment"] = "none"
    elif variant == "no-pretraining":
        config["stages"] = [s for s in config["stages"] if s["name"] != "pretrain"]
        config["init"] = "none"
    elif variant == "contact-weight":
        config["contact_weight"] = contact_weight
    elif variant == "no-added-data":
        for stage in config["stages"]:
            stage["data"] = [
                spec
                for spec in stage["data"]
                if spec["role"] == "val" or Path(spec["path"]).name not in ADDED_SETS
            ]
    elif variant != "recipe":
        raise SystemExit(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return config


def run(command: list[str], log: Path) -> None:
    """Run a CLI command, its output appended to ``log``; stop on failure."""
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"{command[1]} failed (exit {code}); see {log}")


def train_and_evaluate(variant: str, args: argparse.Namespace) -> dict:
    """Train one variant (resuming) and evaluate it; returns its test metrics and train time."""
    folder = args.out / variant
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    config = variant_config(args.config, variant, folder, args.finetune_epochs, args.contact_weight)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    bin_dir = Path(sys.executable).parent
    log = folder / "log.txt"
    if not (folder / "model" / "model.safetensors").is_file():
        run(
            [
                str(bin_dir / "histobatch"),
                "train",
                "--config",
                str(config_path),
                "--resume",
                "--no-progress",
            ],
            log,
        )
    metrics_path = folder / "test" / "metrics.json"
    if not metrics_path.is_file():
        run(
            [
                str(bin_dir / "histobatch"),
                "evaluate",
                "--data",
                str(args.test),
                "--model",
                str(folder / "model"),
                "--out",
                str(metrics_path),
                "--no-progress",
            ],
            log,
        )
    metrics = json.loads(metrics_path.read_text())
    model_config = json.loads((folder / "model" / "config.json").read_text())
    metrics["train_time_s"] = model_config.get("provenance", {}).get("train_time_s")
    metrics["validation"] = model_config.get("metrics", {}).get("validation", {})
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=HERE.parent / "examples" / "train_consep.yaml"
    )
    parser.add_argument(
        "--finetune-epochs", type=int, default=20, help="0: the config's own last stage"
    )
    parser.add_argument("--out", type=Path, default=HERE / "work" / "ablation")
    parser.add_argument("--test", type=Path, default=DATA / "consep4" / "test")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=", ".join(VARIANTS))
    parser.add_argument("--contact-weight", type=float, default=4.0)
    args = parser.parse_args()
    args.out = args.out.resolve()
    started = time.time()
    results = {}
    for variant in args.variants.split(","):
        print(f"{variant}: training and evaluating in {args.out / variant}", flush=True)
        results[variant] = train_and_evaluate(variant, args)
    (args.out / "ablation.json").write_text(json.dumps(results, indent=1) + "\n")
    header = "| variant | " + " | ".join(COLUMNS) + " | " + " | ".join(f"F_c {t}" for t in TYPES)
    header += " | val PQ | train min |"
    table = [header, "|" + "---|" * (len(COLUMNS) + len(TYPES) + 3)]
    for variant, m in results.items():
        cells = [f"{m[c]:.3f}" for c in COLUMNS] + [f"{m['f_c'][t]:.3f}" for t in TYPES]
        val_pq = m["validation"].get("val_pq")
        cells.append(f"{val_pq:.3f}" if val_pq is not None else "-")
        cells.append(f"{m['train_time_s'] / 60:.0f}" if m.get("train_time_s") else "-")
        table.append(f"| {variant} | " + " | ".join(cells) + " |")
    budget = f"last stage {args.finetune_epochs} epochs" if args.finetune_epochs else "as written"
    publish(
        f"Ablation: {', '.join(results)} (consep4 test, histobatch evaluate)",
        f"config {args.config.name}, {budget} for every variant, same seed; "
        f"{(time.time() - started) / 60:.0f} min in all",
        table,
    )


if __name__ == "__main__":
    main()
