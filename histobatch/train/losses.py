"""Losses for the three heads: BCE + Dice (nuclear pixels), MSE + gradient MSE (separation maps,
HoVer-Net's recipe for ``hv``; MSE and inside-nuclei MSE for ``distance``; BCE + Dice for the
``marker`` cores), CE + Dice (types)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - Dice over the batch; ``prob`` and ``target`` have the same shape."""
    dims = tuple(range(prob.ndim))
    inter = (prob * target).sum(dims)
    return 1 - (2 * inter + eps) / (prob.sum(dims) + target.sum(dims) + eps)


def _gradients(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences d/dx of channel 0 and d/dy of channel 1 of ``(B, 2, H, W)``."""
    h = maps[:, 0:1]
    v = maps[:, 1:2]
    dh = F.pad(h[..., 1:] - h[..., :-1], (0, 1, 0, 0))
    dv = F.pad(v[..., 1:, :] - v[..., :-1, :], (0, 0, 0, 1))
    return dh, dv


def _weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None):
    """Mean squared error, each pixel's term multiplied by ``weight`` ``(B, H, W)`` if given."""
    if weight is None:
        return F.mse_loss(pred, target)
    squared = (pred - target) ** 2 * weight[:, None]
    return squared.sum() / (weight.sum() * pred.shape[1]).clamp_min(1.0)


def _inside_weights(nuclear: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """``(B, 1, H, W)`` weights of the inside-nuclei terms: the nuclear mask, times ``weight``."""
    mask = nuclear[:, None].float()
    return mask if weight is None else mask * weight[:, None]


def hv_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    nuclear: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE of the maps plus twice the MSE of their gradients inside nuclei (MSGE).

    ``weight`` ``(B, H, W)`` optionally weights every pixel's terms (e.g. contact lines up).
    """
    mse = _weighted_mse(pred, target, weight)
    pdh, pdv = _gradients(pred)
    tdh, tdv = _gradients(target)
    mask = _inside_weights(nuclear, weight)
    denom = mask.sum().clamp_min(1.0)
    msge = (((pdh - tdh) ** 2 + (pdv - tdv) ** 2) * mask).sum() / denom
    return mse + 2 * msge


def distance_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    nuclear: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE of the distance map over all pixels plus the MSE inside nuclei (where it matters).

    ``weight`` ``(B, H, W)`` optionally weights every pixel's terms (e.g. contact lines up).
    """
    mse = _weighted_mse(pred, target, weight)
    mask = _inside_weights(nuclear, weight)
    inside = (((pred - target) ** 2) * mask).sum() / mask.sum().clamp_min(1.0)
    return mse + inside


def marker_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    nuclear: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """BCE + Dice of the core logit (``(B, 1, H, W)``) against the core map.

    ``weight`` ``(B, H, W)`` optionally weights every pixel's BCE term (e.g. contact lines up);
    ``nuclear`` is unused (cores are a classification over all pixels).
    """
    del nuclear
    logit = pred[:, 0]
    core = target[:, 0]
    bce = F.binary_cross_entropy_with_logits(logit, core, weight=weight)
    return bce + soft_dice_loss(torch.sigmoid(logit), core)


SEPARATION_LOSSES = {"hv": hv_loss, "distance": distance_loss, "marker": marker_loss}


def nucleus_loss(
    output: torch.Tensor,
    np_target: torch.Tensor,
    hv_target: torch.Tensor,
    tp_target: torch.Tensor,
    has_types: torch.Tensor,
    type_weights: torch.Tensor | None = None,
    separation: str = "hv",
    separation_weight: torch.Tensor | None = None,
    separation_factor: float = 1.0,
    np_type_power: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts.

    Parameters
    ----------
    output
        ``(B, 1 + S + K, H, W)`` raw network output (np logit, S separation maps, type logits).
    np_target
        ``(B, H, W)`` 0/1 nuclear pixels.
    hv_target
        ``(B, S, H, W)`` separation target (see :func:`histobatch.targets.separation_targets`).
    tp_target
        ``(B, H, W)`` type ids.
    has_types
        ``(B,)`` bool: which samples carry type labels (type loss is skipped for the others).
    type_weights
        Optional ``(K,)`` class weights of the type cross-entropy (against class imbalance).
    separation
        ``hv`` (S = 2), ``distance`` or ``marker`` (S = 1).
    separation_weight
        Optional ``(B, H, W)`` pixel weights of the separation loss (see
        :func:`histobatch.targets.contact_pixels`).
    separation_factor
        Factor of the separation loss in the total (its part is reported unscaled).
    np_type_power
        If > 0 (and ``type_weights`` are given), the nuclear-pixel BCE of typed samples weights
        each pixel by its type's weight to this power (background by the background's), so that
        rare types' nuclei are not missed; untyped samples keep weight 1.
    """
    output = output.float()
    np_logit = output[:, 0]
    offset = 1 + hv_target.shape[1]
    hv = output[:, 1:offset]
    tp_logit = output[:, offset:]
    np_target = np_target.float()
    np_weight = None
    if np_type_power > 0 and type_weights is not None:
        per_type = type_weights.to(output.device) ** np_type_power
        np_weight = torch.where(has_types[:, None, None], per_type[tp_target], 1.0)
    loss_np = F.binary_cross_entropy_with_logits(
        np_logit, np_target, weight=np_weight
    ) + soft_dice_loss(torch.sigmoid(np_logit), np_target)
    loss_sep = SEPARATION_LOSSES[separation](hv, hv_target, np_target > 0, separation_weight)
    total = loss_np + separation_factor * loss_sep
    parts = {"np": float(loss_np.detach()), separation: float(loss_sep.detach())}
    if bool(has_types.any()):
        logits = tp_logit[has_types]
        target = tp_target[has_types]
        loss_ce = F.cross_entropy(
            logits,
            target,
            weight=None if type_weights is None else type_weights.to(logits.device),
        )
        prob = torch.softmax(logits, dim=1)
        onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).float()
        loss_dice = torch.stack(
            [soft_dice_loss(prob[:, c], onehot[:, c]) for c in range(1, logits.shape[1])]
        ).mean()
        loss_tp = loss_ce + loss_dice
        total = total + loss_tp
        parts["tp"] = float(loss_tp.detach())
    parts["total"] = float(total.detach())
    return total, parts


def balanced_type_weights(pixel_counts, power: float = 0.5) -> torch.Tensor:
    """Class weights ``(median / frequency) ** power``, scaled to a pixel-weighted mean of 1.

    ``power=0.5`` (square-root balancing) lifts rare types without letting a class of a few
    hundred nuclei dominate the loss. Classes absent from the counts get the largest weight seen.
    """
    counts = torch.as_tensor(pixel_counts, dtype=torch.float64)
    freq = counts / counts.sum()
    present = freq > 0
    weights = torch.zeros_like(freq)
    weights[present] = (freq[present].median() / freq[present]) ** power
    weights[~present] = weights[present].max()
    weights = weights / (weights * freq).sum()
    return weights.float()
