"""Torch dataset that turns annotated samples into augmented crops with all training targets."""

from __future__ import annotations

import numpy as np
import torch

from histobatch.targets import contact_pixels, separation_targets
from histobatch.train.datasets import Sample


def normalise(image: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 normalised."""
    array = image.astype(np.float32) / 255.0
    array = (array - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(array.transpose(2, 0, 1))


class CropDataset(torch.utils.data.Dataset):
    """Random augmented crops from a list of samples.

    Each item is ``(image, np_target, separation_target, tp_target, has_types,
    separation_weight)``. Sampling is
    driven by an explicit index list so that an epoch can hold more crops than there are images
    (large images give several random crops each).

    Parameters
    ----------
    samples
        Annotated images.
    augmentation
        An albumentations transform that includes the random crop.
    mean, std
        Normalisation of the model.
    length
        Items per epoch.
    separation
        Kind of separation target (``hv`` or ``distance``, see :mod:`histobatch.targets`).
    contact_weight
        Extra weight of the separation loss on pixels where touching nuclei meet
        (:func:`histobatch.targets.contact_pixels`): their weight is ``1 + contact_weight``,
        every other pixel's 1. 0 gives uniform weights.
    """

    def __init__(
        self,
        samples: list[Sample],
        augmentation,
        mean: list[float],
        std: list[float],
        length: int,
        separation: str = "hv",
        contact_weight: float = 0.0,
    ) -> None:
        self.separation = separation
        self.contact_weight = float(contact_weight)
        self.samples = samples
        self.augmentation = augmentation
        self.mean = mean
        self.std = std
        self.length = length
        areas = np.array([s.inst_map.size for s in samples], np.float64)
        self.weights = areas / areas.sum()
        self.order = np.arange(length) % len(samples)

    def reshuffle(self, rng: np.random.Generator) -> None:
        """Draw this epoch's image for every item (images weighted by area)."""
        self.order = rng.choice(len(self.samples), size=self.length, p=self.weights)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        sample = self.samples[int(self.order[index])]
        has_types = sample.type_map is not None
        types = sample.type_map if has_types else np.zeros_like(sample.inst_map)
        out = self.augmentation(image=sample.image, masks=[sample.inst_map, types.astype(np.int32)])
        inst, tp = out["masks"]
        inst = np.asarray(inst, np.int32)
        weight = np.ones(inst.shape, np.float32)
        if self.contact_weight:
            weight[contact_pixels(inst)] += self.contact_weight
        return (
            torch.from_numpy(normalise(out["image"], self.mean, self.std)),
            torch.from_numpy((inst > 0).astype(np.float32)),
            torch.from_numpy(separation_targets(inst, self.separation)),
            torch.from_numpy(np.asarray(tp, np.int64)),
            torch.tensor(has_types),
            torch.from_numpy(weight),
        )
