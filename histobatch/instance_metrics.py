"""Nucleus segmentation and classification metrics of the field (HoVer-Net protocol).

Per image: Dice of nuclear pixels, AJI (aggregated Jaccard index), and panoptic quality
``PQ = DQ x SQ`` with a true/predicted pair when their IoU exceeds 0.5. Over a dataset: detection
F1 ``F_d`` and per-type classification F1 ``F_c`` from centroids paired one-to-one (Hungarian
assignment) within a radius, pooled over all images (Graham et al., Medical Image Analysis 2019).

References
----------
Kumar et al., "A dataset and a technique for generalized nuclear segmentation", IEEE TMI 2017 (AJI).
Kirillov et al., "Panoptic segmentation", CVPR 2019 (PQ).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def dice(truth: np.ndarray, pred: np.ndarray) -> float:
    """Dice of the nuclear pixels (any label > 0); NaN when both are empty."""
    t = truth > 0
    p = pred > 0
    denominator = t.sum() + p.sum()
    return float(2 * (t & p).sum() / denominator) if denominator else float("nan")


def _overlaps(truth: np.ndarray, pred: np.ndarray):
    """Sequential ids and the ``(n_true + 1, n_pred + 1)`` table of pixel overlaps (row/col 0 =
    background), from one pass over the pixels."""
    _, t = np.unique(truth, return_inverse=True)
    _, p = np.unique(pred, return_inverse=True)
    t = t.reshape(truth.shape)
    p = p.reshape(pred.shape)
    # np.unique maps background 0 to index 0 only when background is present.
    if truth.min() > 0:
        t = t + 1
    if pred.min() > 0:
        p = p + 1
    n_t, n_p = int(t.max()) + 1, int(p.max()) + 1
    table = np.bincount((t * n_p + p).ravel(), minlength=n_t * n_p).reshape(n_t, n_p)
    return table


def _pair_tables(truth: np.ndarray, pred: np.ndarray):
    """Intersection, union and IoU of every (true, predicted) instance pair."""
    table = _overlaps(truth, pred)
    inter = table[1:, 1:].astype(np.float64)
    area_t = table[1:, :].sum(1).astype(np.float64)
    area_p = table[:, 1:].sum(0).astype(np.float64)
    union = area_t[:, None] + area_p[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return inter, union, iou, area_t, area_p


def aji(truth: np.ndarray, pred: np.ndarray) -> float:
    """Aggregated Jaccard index.

    Every true nucleus is paired with the predicted nucleus of highest IoU among those it touches
    (a prediction may serve several true nuclei); the intersections and unions of these pairs are
    summed, and the areas of unpaired true and predicted nuclei are added to the union.
    Ties in IoU go to the lowest predicted label. NaN when both maps are empty.
    """
    inter, union, iou, area_t, area_p = _pair_tables(truth, pred)
    if not len(area_t) and not len(area_p):
        return float("nan")
    if not len(area_t) or not len(area_p):
        return 0.0
    best = iou.argmax(1)
    rows = np.nonzero(iou[np.arange(len(area_t)), best] > 0)[0]
    cols = best[rows]
    total_inter = inter[rows, cols].sum()
    total_union = union[rows, cols].sum()
    unpaired_t = np.setdiff1d(np.arange(len(area_t)), rows)
    unpaired_p = np.setdiff1d(np.arange(len(area_p)), cols)
    total_union += area_t[unpaired_t].sum() + area_p[unpaired_p].sum()
    return float(total_inter / total_union) if total_union else float("nan")


@dataclass
class PanopticQuality:
    """Detection quality, segmentation quality and their product, with the counts behind them."""

    dq: float
    sq: float
    pq: float
    tp: int
    fp: int
    fn: int


def panoptic_quality(
    truth: np.ndarray, pred: np.ndarray, match_iou: float = 0.5
) -> PanopticQuality:
    """PQ of one image: pairs are (true, predicted) nuclei with IoU above ``match_iou``
    (unique when ``match_iou >= 0.5``). NaN values when both maps are empty."""
    if match_iou < 0.5:
        raise ValueError("match_iou below 0.5 would need an assignment step; use >= 0.5")
    _, _, iou, area_t, area_p = _pair_tables(truth, pred)
    tp_mask = iou > match_iou
    tp = int(tp_mask.sum())
    fn = len(area_t) - tp
    fp = len(area_p) - tp
    if tp + fp + fn == 0:
        nan = float("nan")
        return PanopticQuality(nan, nan, nan, 0, 0, 0)
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou[tp_mask].sum() / tp) if tp else 0.0
    return PanopticQuality(dq, sq, dq * sq, tp, fp, fn)


def pair_points(truth: np.ndarray, pred: np.ndarray, radius: float):
    """One-to-one pairing of two point sets minimising total distance, pairs within ``radius``.

    Parameters
    ----------
    truth, pred
        ``(N, 2)`` and ``(M, 2)`` coordinates.

    Returns
    -------
    paired_truth, paired_pred, unpaired_truth, unpaired_pred
        Index arrays into ``truth`` and ``pred``.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    truth = np.asarray(truth, np.float64).reshape(-1, 2)
    pred = np.asarray(pred, np.float64).reshape(-1, 2)
    if len(truth) and len(pred):
        distance = cdist(truth, pred)
        rows, cols = linear_sum_assignment(distance)
        close = distance[rows, cols] <= radius
        rows, cols = rows[close], cols[close]
    else:
        rows = cols = np.zeros(0, np.int64)
    unpaired_t = np.setdiff1d(np.arange(len(truth)), rows)
    unpaired_p = np.setdiff1d(np.arange(len(pred)), cols)
    return rows, cols, unpaired_t, unpaired_p


@dataclass
class PointMatches:
    """Types of paired and unpaired nuclei, accumulated over images."""

    paired_truth: list[np.ndarray] = field(default_factory=list)
    paired_pred: list[np.ndarray] = field(default_factory=list)
    unpaired_truth: list[np.ndarray] = field(default_factory=list)
    unpaired_pred: list[np.ndarray] = field(default_factory=list)

    def add(
        self,
        truth_xy: np.ndarray,
        truth_types: np.ndarray,
        pred_xy: np.ndarray,
        pred_types: np.ndarray,
        radius: float,
    ) -> None:
        """Pair one image's centroids and keep the types of each group."""
        rows, cols, ut, up = pair_points(truth_xy, pred_xy, radius)
        truth_types = np.asarray(truth_types, np.int64)
        pred_types = np.asarray(pred_types, np.int64)
        self.paired_truth.append(truth_types[rows])
        self.paired_pred.append(pred_types[cols])
        self.unpaired_truth.append(truth_types[ut])
        self.unpaired_pred.append(pred_types[up])

    def _all(self):
        def cat(parts):
            return np.concatenate(parts) if parts else np.zeros(0, np.int64)

        return (
            cat(self.paired_truth),
            cat(self.paired_pred),
            cat(self.unpaired_truth),
            cat(self.unpaired_pred),
        )

    def detection_f1(self) -> float:
        """``F_d = 2 TP / (2 TP + FP + FN)`` over all images."""
        pt, _, ut, up = self._all()
        tp = len(pt)
        denominator = 2 * tp + len(ut) + len(up)
        return float(2 * tp / denominator) if denominator else float("nan")

    def type_f1(self, type_id: int) -> float:
        """``F_c`` of one type (HoVer-Net's weighting of classification and detection errors).

        Among paired nuclei where the truth or the prediction is ``type_id``:
        ``F_c = 2 TP_c / (2 TP_c + 2 FP_c + 2 FN_c + FP_d + FN_d)`` with ``FP_d``/``FN_d`` the
        unpaired predicted/true nuclei of that type. NaN when the type occurs nowhere.
        """
        pt, pp, ut, up = self._all()
        tp_c = int(((pt == type_id) & (pp == type_id)).sum())
        fp_c = int(((pt != type_id) & (pp == type_id)).sum())
        fn_c = int(((pt == type_id) & (pp != type_id)).sum())
        fp_d = int((up == type_id).sum())
        fn_d = int((ut == type_id).sum())
        denominator = 2 * tp_c + 2 * fp_c + 2 * fn_c + fp_d + fn_d
        return float(2 * tp_c / denominator) if denominator else float("nan")

    def type_accuracy(self) -> float:
        """Share of paired nuclei given their true type."""
        pt, pp, _, _ = self._all()
        return float((pt == pp).mean()) if len(pt) else float("nan")

    def confusion(self, n_types: int) -> np.ndarray:
        """``(n_types + 1, n_types + 1)`` counts, rows truth, columns prediction, index 0 =
        "no partner" (unpaired predictions in row 0, missed nuclei in column 0)."""
        pt, pp, ut, up = self._all()
        matrix = np.zeros((n_types + 1, n_types + 1), np.int64)
        np.add.at(matrix, (pt, pp), 1)
        np.add.at(matrix, (ut, np.zeros_like(ut)), 1)
        np.add.at(matrix, (np.zeros_like(up), up), 1)
        return matrix

    def counts(self) -> dict[str, int]:
        pt, _, ut, up = self._all()
        return {"paired": len(pt), "missed": len(ut), "false": len(up)}


def instance_centroids(inst_map: np.ndarray, type_map: np.ndarray | None = None):
    """Centroids ``(N, 2)`` as (x, y) and majority types ``(N,)`` of the labels of ``inst_map``
    (types 0 when ``type_map`` is ``None``)."""
    labels = inst_map.ravel()
    n = int(labels.max()) if labels.size else 0
    ids = np.unique(labels[labels > 0])
    if not len(ids):
        return np.zeros((0, 2)), np.zeros(0, np.int64)
    ys, xs = np.indices(inst_map.shape)
    area = np.bincount(labels, minlength=n + 1).astype(np.float64)
    cx = np.bincount(labels, xs.ravel(), minlength=n + 1) / np.maximum(area, 1)
    cy = np.bincount(labels, ys.ravel(), minlength=n + 1) / np.maximum(area, 1)
    xy = np.stack([cx[ids], cy[ids]], axis=1)
    if type_map is None:
        return xy, np.zeros(len(ids), np.int64)
    types_flat = type_map.ravel().astype(np.int64)
    n_types = int(types_flat.max()) + 1
    votes = np.zeros((n + 1, n_types), np.int64)
    inside = labels > 0
    np.add.at(votes, (labels[inside], types_flat[inside]), 1)
    return xy, votes[ids].argmax(1)
