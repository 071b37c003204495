"""Segmentation-safe augmentation (albumentations).

Image and masks are transformed together. Only transforms that keep nucleus shape are used:
flips and 90° rotations (exact, no interpolation, no border fill), colour/stain jitter, blur,
noise and JPEG artefacts; ``stain`` adds H&E stain-matrix jitter (albumentations ``HEStain``,
after Tellez et al. 2018) for other labs' staining. No shear, no anisotropic stretch, no shifts
that would pull border colour into the picture.
"""

from __future__ import annotations


def build_augmentation(strength: str = "default", crop_size: int | None = None):
    """Return an ``albumentations.Compose`` for training.

    Parameters
    ----------
    strength
        ``"none"`` (only the crop), ``"default"`` or ``"stain"`` (default + H&E stain jitter).
    crop_size
        Random square crop taken first (images smaller than this are padded by reflection).
    """
    import albumentations as A
    import cv2

    steps = []
    if crop_size:
        steps += [
            A.PadIfNeeded(crop_size, crop_size, border_mode=cv2.BORDER_REFLECT_101),
            A.RandomCrop(crop_size, crop_size),
        ]
    if strength == "stain":
        steps += [A.HEStain(method="random_preset", p=0.5)]
    if strength in ("default", "stain"):
        steps += [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.HueSaturationValue(hue_shift_limit=12, sat_shift_limit=25, val_shift_limit=15, p=0.8),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.2, p=0.6),
            A.RandomGamma(gamma_limit=(85, 115), p=0.3),
            A.OneOf(
                [
                    A.GaussianBlur(blur_limit=(3, 5)),
                    A.MedianBlur(blur_limit=3),
                    A.GaussNoise(std_range=(0.01, 0.05)),
                    A.ImageCompression(quality_range=(50, 95)),
                ],
                p=0.4,
            ),
        ]
    elif strength != "none":
        raise ValueError(
            f"unknown augmentation strength {strength!r}; use 'default', 'stain' or 'none'"
        )
    return A.Compose(steps)
