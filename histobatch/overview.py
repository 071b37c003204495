"""``overview.png``: slide thumbnail, tissue outline and nuclei coloured by type, with a legend."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def draw_overview(
    thumbnail: np.ndarray,
    downsample: float,
    tissue: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    type_ids: np.ndarray,
    class_names: list[str],
    class_colors: list[list[int]],
    path: str | Path,
) -> None:
    """Write the overview picture.

    Parameters
    ----------
    thumbnail
        RGB thumbnail of the slide.
    downsample
        Level-0 pixels per thumbnail pixel.
    tissue
        Boolean tissue mask (any size; resized to the thumbnail).
    x, y, type_ids
        Nucleus centroids in level-0 pixels and their types.
    """
    canvas = thumbnail.copy()
    h, w = canvas.shape[:2]
    radius = 1 if downsample > 6 else 2
    px = np.clip(np.round(np.asarray(x) / downsample).astype(int), 0, w - 1)
    py = np.clip(np.round(np.asarray(y) / downsample).astype(int), 0, h - 1)
    for type_id in range(1, len(class_names)):
        selected = np.asarray(type_ids) == type_id
        colour = tuple(int(c) for c in class_colors[type_id])
        if radius == 1:
            canvas[py[selected], px[selected]] = colour
        else:
            for cx, cy in zip(px[selected], py[selected], strict=True):
                cv2.circle(canvas, (int(cx), int(cy)), radius, colour, -1, lineType=cv2.LINE_AA)
    mask = cv2.resize(tissue.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(canvas, contours, -1, (40, 40, 40), max(1, w // 800), cv2.LINE_AA)
    canvas = _with_legend(canvas, type_ids, class_names, class_colors)
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))


def _with_legend(canvas, type_ids, class_names, class_colors) -> np.ndarray:
    counts = np.bincount(np.asarray(type_ids, np.int64), minlength=len(class_names))
    lines = [(f"{name}: {counts[i]:,}", class_colors[i]) for i, name in enumerate(class_names) if i]
    lines.append(("tissue outline", [40, 40, 40]))
    row = 22
    legend = np.full((row * len(lines) + 10, canvas.shape[1], 3), 255, np.uint8)
    for i, (text, colour) in enumerate(lines):
        y = 8 + i * row
        cv2.rectangle(legend, (8, y), (24, y + 14), tuple(int(c) for c in colour), -1)
        cv2.putText(
            legend, text, (32, y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
        )
    return np.concatenate([canvas, legend], axis=0)
