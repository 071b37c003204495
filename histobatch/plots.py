"""Figures written by training, evaluation and segmentation runs (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colorise(type_map: np.ndarray, colors: list[list[int]]) -> np.ndarray:
    """RGB picture of a type map with the model's class colours (background black)."""
    lut = np.asarray(colors, np.uint8)
    return lut[np.clip(type_map, 0, len(lut) - 1)]


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Loss, validation accuracy (pixels and nuclei) and IoU per epoch in one figure."""
    plt = _pyplot()
    epochs = np.arange(1, len(history) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        values = [h.get(key, np.nan) for h in history]
        axes[0].plot(epochs, values, label=label)
    axes[0].set_title("loss")
    axes[1].plot(epochs, [h.get("val_pixel_accuracy", np.nan) for h in history], label="pixel acc.")
    axes[1].plot(epochs, [h.get("val_np_dice", np.nan) for h in history], label="nuclear Dice")
    for key, label in (("val_aji", "AJI"), ("val_pq", "PQ"), ("val_f_d", "F_d")):
        if any(key in h for h in history):
            axes[1].plot(epochs, [h.get(key, np.nan) for h in history], label=label)
    axes[1].set_title("validation: pixels and nuclei")
    axes[2].plot(epochs, [h.get("val_miou", np.nan) for h in history], "k-", label="mean IoU")
    names = list((history[-1].get("val_iou") or {}).keys()) if history else []
    for name in names:
        axes[2].plot(epochs, [h.get("val_iou", {}).get(name, np.nan) for h in history], label=name)
    axes[2].set_title("validation IoU")
    stages = [h.get("stage") for h in history]
    for ax in axes:
        for i in range(1, len(stages)):
            if stages[i] != stages[i - 1]:
                ax.axvline(i + 0.5, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(
    confusion: np.ndarray,
    class_names: list[str],
    path: str | Path,
    title: str = "pixel confusion (rows: truth)",
) -> None:
    """Row-normalised confusion matrix with raw counts in each cell."""
    plt = _pyplot()
    confusion = np.asarray(confusion, np.float64)
    norm = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    image = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{int(confusion[i, j]):,}",
                ha="center",
                va="center",
                fontsize=7,
                color=colour,
            )
    ax.set_xticks(range(len(class_names)), class_names, rotation=30, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_samples(
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
    colors: list[list[int]],
    path: str | Path,
) -> None:
    """Rows of image | label | prediction panels; ``rows`` holds (title, image, truth, pred)."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3 * len(rows)), squeeze=False)
    for r, (title, image, truth, pred) in enumerate(rows):
        for c, (panel, name) in enumerate(
            (
                (image, "image"),
                (colorise(truth, colors), "label"),
                (colorise(pred, colors), "prediction"),
            )
        ):
            axes[r, c].imshow(panel)
            axes[r, c].set_axis_off()
            axes[r, c].set_title(f"{title}: {name}" if c == 0 else name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_cohort_composition(cohort, path: str | Path) -> None:
    """Nucleus-type composition (stacked fractions) and density of every finished slide.

    Parameters
    ----------
    cohort
        The cohort table (``histobatch aggregate``): ``slide``, ``status``, ``nuclei_per_mm2``
        and ``<type>_fraction`` columns.
    path
        PNG to write.
    """
    from histobatch.model import CONSEP4_CLASSES, CONSEP4_COLORS

    plt = _pyplot()
    done = cohort[cohort["status"] == "done"] if len(cohort) else cohort
    types = [c[: -len("_fraction")] for c in cohort.columns if c.endswith("_fraction")]
    height = min(2.0 + 0.28 * max(len(done), 1), 60.0)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, height), sharey=True, gridspec_kw={"width_ratios": [3, 1.3]}
    )
    if len(done) == 0:
        left.text(0.5, 0.5, "no finished slides", ha="center", va="center")
    else:
        positions = np.arange(len(done))
        start = np.zeros(len(done))
        cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, name in enumerate(types):
            if name in CONSEP4_CLASSES:
                color = np.array(CONSEP4_COLORS[CONSEP4_CLASSES.index(name)]) / 255
            else:
                color = cycle[i % len(cycle)]
            values = done[f"{name}_fraction"].fillna(0).to_numpy(float)
            left.barh(positions, values, left=start, color=color, label=name)
            start += values
        right.barh(positions, done["nuclei_per_mm2"].to_numpy(float), color="0.4")
        left.set_yticks(positions, done["slide"].tolist())
        left.invert_yaxis()
        left.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(types), frameon=False)
    left.set_xlim(0, 1)
    left.set_xlabel("fraction of nuclei")
    right.set_xlabel("nuclei per mm² of tissue")
    failed = len(cohort) - len(done)
    title = f"{len(done)} slide(s)" + (f", {failed} failed or unfinished" if failed else "")
    fig.suptitle(title, x=0.01, ha="left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
