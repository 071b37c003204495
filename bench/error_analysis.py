"""Where do the nuclei go? Every true nucleus of held-out images is classed as matched
(IoU > 0.5, as PQ pairs them), missed (mostly background in the prediction), merged (its best
prediction also covers another true nucleus), split (two or more predictions share it) or
misshapen (covered, one prediction, IoU <= 0.5), by type and size; plus the foreground bias
(predicted / true nuclear area) and the area ratio of matched pairs.

    python bench/error_analysis.py                      # default model, consep4 validation tiles
    python bench/error_analysis.py --model runs/v2/model --source other-organs

Validation images are those the training recipe holds out (never consep4 test). Appends the table
to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
from model_card import OTHER_ORGANS
from results import DATA, publish

OUTCOMES = ("matched", "missed", "merged", "split", "misshapen")
SIZE_BINS = ((0, 100), (100, 250), (250, 500), (500, 10**9))  # px at 40x (0.0625 µm²/px)


def held_out(source: str, val_fraction: float, seed: int):
    """The validation images of ``source`` (``consep4`` or ``other-organs``)."""
    from histobatch.train.datasets import read_dataset, split_by_group

    if source == "consep4":
        samples = read_dataset("consep", DATA / "consep4" / "train", "identity")
        return split_by_group(samples, val_fraction, seed)[1]
    return read_dataset("consep", DATA / "monuseg-train-extra", "none", include=OTHER_ORGANS)


def classify(truth: np.ndarray, pred: np.ndarray) -> tuple[dict[int, str], int, list[float]]:
    """Outcome of every true nucleus, the number of false predictions (no true nucleus with
    IoU > 0.5) and the pred/true area ratios of matched pairs."""
    t_ids, t_area = np.unique(truth, return_counts=True)
    p_ids, p_area = np.unique(pred, return_counts=True)
    t_area = dict(zip(t_ids.tolist(), t_area.tolist(), strict=True))
    p_area = dict(zip(p_ids.tolist(), p_area.tolist(), strict=True))
    base = int(pred.max()) + 1
    pairs, inter = np.unique(truth.astype(np.int64) * base + pred, return_counts=True)
    overlap: dict[int, dict[int, int]] = defaultdict(dict)
    by_pred: dict[int, dict[int, int]] = defaultdict(dict)
    for code, n in zip(pairs.tolist(), inter.tolist(), strict=True):
        t, p = divmod(code, base)
        overlap[t][p] = n
        by_pred[p][t] = n
    outcome: dict[int, str] = {}
    matched_preds: set[int] = set()
    ratios: list[float] = []
    for t in t_ids.tolist():
        if t == 0:
            continue
        hits = {p: n for p, n in overlap[t].items() if p != 0}
        covered = sum(hits.values()) / t_area[t]
        best, best_iou = 0, 0.0
        for p, n in hits.items():
            iou = n / (t_area[t] + p_area[p] - n)
            if iou > best_iou:
                best, best_iou = p, iou
        if best_iou > 0.5:
            outcome[t] = "matched"
            matched_preds.add(best)
            ratios.append(p_area[best] / t_area[t])
        elif covered < 0.5:
            outcome[t] = "missed"
        elif sum(n >= 0.2 * t_area[t] for n in hits.values()) >= 2:
            outcome[t] = "split"
        elif any(o != t and o != 0 and n >= 0.3 * t_area[o] for o, n in by_pred[best].items()):
            outcome[t] = "merged"
        else:
            outcome[t] = "misshapen"
    false = sum(1 for p in p_ids.tolist() if p != 0 and p not in matched_preds)
    return outcome, false, ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--source", choices=["consep4", "other-organs"], default="consep4")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--margin", type=int, default=192, help="mirrored px around each image")
    args = parser.parse_args()

    from histobatch.device import autocast_dtype, configure_threads
    from histobatch.inference import predict_image, raw_to_maps
    from histobatch.instance_metrics import instance_centroids
    from histobatch.model import load_model
    from histobatch.postprocess import instances_from_maps

    configure_threads(None)
    model = load_model(args.model)
    config = model.config
    network = model.network.eval()
    dtype = autocast_dtype("cpu", "auto")
    samples = held_out(args.source, args.val_fraction, args.seed)
    counts: dict[str, Counter] = defaultdict(Counter)
    false_total = 0
    ratios: list[float] = []
    area_pred = area_true = 0
    for sample in samples:
        raw = predict_image(network, sample.image, config, "cpu", dtype, args.margin)
        maps = raw_to_maps(raw, config)
        found = instances_from_maps(maps[0], maps[1], maps[2:], config.postprocess)
        area_pred += int((found.labels > 0).sum())
        area_true += int((sample.inst_map > 0).sum())
        outcome, false, pair_ratios = classify(sample.inst_map, found.labels)
        false_total += false
        ratios += pair_ratios
        ids, sizes = np.unique(sample.inst_map[sample.inst_map > 0], return_counts=True)
        areas = dict(zip(ids.tolist(), sizes.tolist(), strict=True))
        _, majority = instance_centroids(sample.inst_map, sample.type_map)
        kinds = dict(zip(ids.tolist(), majority.tolist(), strict=True))
        for t, result in outcome.items():
            counts["all"][result] += 1
            if sample.type_map is not None:
                counts[config.class_names[kinds[t]]][result] += 1
            low, high = next(b for b in SIZE_BINS if b[0] <= areas[t] < b[1])
            label = f"{low}-{high} px" if high < 10**9 else f">= {low} px"
            counts[label][result] += 1

    rows = ["| nuclei | n | " + " | ".join(f"{o} %" for o in OUTCOMES) + " |"]
    rows.append("|---" * (len(OUTCOMES) + 2) + "|")
    for label, counter in counts.items():
        n = sum(counter.values())
        cells = " | ".join(f"{100 * counter[o] / n:.1f}" for o in OUTCOMES)
        rows.append(f"| {label} | {n} | {cells} |")
    ratios_arr = np.asarray(ratios)
    publish(
        f"Error analysis: {args.source} validation, model {args.model} "
        f"({config.name} {config.version}, separation {config.separation})",
        f"{len(samples)} images, mirrored margin {args.margin} px, postprocess np "
        f"{config.postprocess.np_threshold} marker {config.postprocess.marker_threshold}; "
        f"false predictions {false_total}; predicted / true nuclear area "
        f"{area_pred / max(area_true, 1):.3f}; matched pairs' area ratio median "
        f"{np.median(ratios_arr):.3f} (IQR {np.percentile(ratios_arr, 25):.3f}-"
        f"{np.percentile(ratios_arr, 75):.3f}). Size bins in 40x px (16 px = 1 µm²).",
        rows,
    )


if __name__ == "__main__":
    main()
