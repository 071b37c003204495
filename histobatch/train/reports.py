"""What a training run writes besides its checkpoint: the per-epoch history (``metrics.json``,
``curves.png``) and the final figures (``confusion.png``, ``samples.png``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_history(out: Path, history: list[dict]) -> None:
    from histobatch.plots import plot_curves

    (out / "metrics.json").write_text(json.dumps(history, indent=1) + "\n")
    plot_curves(history, out / "curves.png")


def write_final_figures(out: Path, network, sources, model_config, device, dtype) -> None:
    """confusion.png (last validation) and samples.png (validation and training rows of the
    last stage's ``sources``, :class:`histobatch.train.sources.Source`)."""
    from histobatch.inference import predict_image
    from histobatch.plots import plot_confusion, plot_samples

    history = (
        json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else []
    )
    with_confusion = [h for h in history if "val_confusion" in h]
    if with_confusion:
        plot_confusion(
            np.asarray(with_confusion[-1]["val_confusion"]),
            model_config.class_names,
            out / "confusion.png",
            title="validation pixels (rows: truth)",
        )
    train_samples = [sample for source in sources for sample in source.train]
    val_samples = [sample for source in sources for sample in source.val]
    rows = []
    for label, group in (("validation", val_samples), ("train", train_samples)):
        for sample in group[:: max(1, len(group) // 3)][:3]:
            raw = predict_image(network, sample.image, model_config, device, dtype)
            pred = np.where(raw[0] > 0, raw[model_config.type_offset + 1 :].argmax(0) + 1, 0)
            truth = sample.type_map if sample.type_map is not None else (sample.inst_map > 0)
            rows.append((f"{label} {sample.name}", sample.image, truth.astype(np.int64), pred))
    if rows:
        plot_samples(rows, model_config.class_colors, out / "samples.png")
