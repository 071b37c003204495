"""What a model grid coarser than the labels can score at best: the true instance maps of consep4
train, resampled to the model grid as training does (nearest) and back to 40x as `evaluate` does,
scored against the originals with the field's metrics (PQ, SQ, Dice, AJI).

    python bench/grid_ceiling.py          # 20x (0.5 µm/px) and 40x (0.25) grids

A perfect network on a 20x grid cannot do better than this on 40x labels. Appends the table to
bench/RESULTS.md. Uses the training split only.
"""

from __future__ import annotations

import numpy as np
from results import DATA, publish


def main() -> None:
    from skimage.transform import resize

    from histobatch.instance_metrics import aji, dice, panoptic_quality
    from histobatch.resample import rescale_array
    from histobatch.train.datasets import read_dataset

    samples = read_dataset("consep", DATA / "consep4" / "train", "identity")
    rows = ["| model grid | µm/px | Dice | AJI | DQ | SQ | PQ |", "|---|---|---|---|---|---|---|"]
    for label, mpp in (("40x", 0.25), ("20x", 0.5)):
        scores = []
        for sample in samples:
            coarse = rescale_array(sample.inst_map, 0.25 / mpp, labels=True)
            back = resize(
                coarse, sample.inst_map.shape, order=0, preserve_range=True, anti_aliasing=False
            ).astype(np.int32)
            pq = panoptic_quality(sample.inst_map, back)
            scores.append(
                (dice(sample.inst_map, back), aji(sample.inst_map, back), pq.dq, pq.sq, pq.pq)
            )
        mean = np.nanmean(np.array(scores, np.float64), axis=0)
        rows.append(f"| {label} | {mpp} | " + " | ".join(f"{v:.3f}" for v in mean) + " |")
        print(rows[-1], flush=True)
    publish(
        "Ceiling of the model grid (true labels through the grid and back)",
        f"consep4 train, {len(samples)} crops of 256² at 40x, labels resampled nearest.",
        rows,
    )


if __name__ == "__main__":
    main()
