"""Segmentation metrics: pixel-level (accuracy, IoU, confusion) and, in
:mod:`histobatch.instance_metrics`, the nucleus-level metrics of the HoVer-Net protocol."""

from __future__ import annotations

import numpy as np


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` pixel counts; rows are the truth, columns the prediction."""
    truth = np.asarray(truth, np.int64).ravel()
    pred = np.asarray(pred, np.int64).ravel()
    index = truth * n_classes + pred
    return np.bincount(index, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def pixel_scores(confusion: np.ndarray, class_names: list[str]) -> dict:
    """Pixel accuracy, IoU per class and mean IoU from a confusion matrix.

    Classes absent from both truth and prediction get IoU ``nan`` and are left out of the mean.

    Examples
    --------
    >>> scores = pixel_scores(np.array([[3, 1], [0, 4]]), ["bg", "fg"])
    >>> scores["pixel_accuracy"], scores["iou"]["fg"]
    (0.875, 0.8)
    """
    confusion = np.asarray(confusion, np.float64)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
    total = confusion.sum()
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "iou": {name: float(v) for name, v in zip(class_names, iou, strict=True)},
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
    }
