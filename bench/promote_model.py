"""Make a training run's model the packaged default (``histobatch/models/default``).

    python bench/promote_model.py runs/v3/model --version 0.5.0 \
        --config "examples/train_continue.yaml with epochs 100, lr 0.0003" [--commit 068d470]

Copies the run's weights, writes its ``config.json`` with the new ``version`` and extends the
provenance: ``lineage`` (the default's own lineage, then this step: version, config, separation,
training time, epochs) and ``train_time_total_s`` (all of the lineage). The validation numbers of
the candidate decide whether to promote it (bench/model_card.py ``--skip-test``); this script
does not check them. Then record the test scores: ``python bench/model_card.py --model default
--record``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from results import HERE

DEFAULT = HERE.parent / "histobatch" / "models" / "default"


def promoted_config(
    candidate: dict, current: dict, version: str, recipe: str, folder: Path = DEFAULT
) -> dict:
    """The default's new ``config.json``: the candidate's, with the lineage of ``current``
    (the model now in ``folder``)."""
    config = json.loads(json.dumps(candidate))
    config["version"] = version
    provenance = config.setdefault("provenance", {})
    init = provenance.get("init")
    if init not in (None, "none", "imagenet") and Path(init).resolve() == folder.resolve():
        # a run continued from the default: name the model, not this machine's path to it
        provenance["init"] = f"histobatch/models/default: model {current.get('version')}"
    lineage = list(current.get("provenance", {}).get("lineage", []))
    lineage.append(
        {
            "version": version,
            "config": recipe,
            "separation": config.get("separation"),
            "train_time_s": provenance.get("train_time_s"),
            "epochs_trained": provenance.get("epochs_trained"),
        }
    )
    provenance["lineage"] = lineage
    provenance["train_time_total_s"] = round(
        sum(step.get("train_time_s") or 0.0 for step in lineage), 1
    )
    config.get("metrics", {}).pop("test", None)  # recorded again for the new weights
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, help="the run's model folder")
    parser.add_argument("--version", required=True)
    parser.add_argument("--config", required=True, help="the recipe step, as it ran")
    parser.add_argument("--commit", help="git commit of the recipe, added to --config")
    parser.add_argument("--to", type=Path, default=DEFAULT)
    args = parser.parse_args()
    weights = args.model / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{weights}: no model weights; export the run first (train --export)")
    candidate = json.loads((args.model / "config.json").read_text())
    current = json.loads((args.to / "config.json").read_text())
    recipe = f"{args.config} (commit {args.commit})" if args.commit else args.config
    config = promoted_config(candidate, current, args.version, recipe, args.to)
    shutil.copyfile(weights, args.to / "model.safetensors")
    (args.to / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    total = config["provenance"]["train_time_total_s"] / 60
    print(f"{args.to}: version {args.version}, {total:.0f} min of training in all")


if __name__ == "__main__":
    main()
