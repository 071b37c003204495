"""Segmentation-safe augmentation (albumentations).

Image and masks are transformed together. Only transforms that keep nucleus shape are used:
flips and 90° rotations (exact, no interpolation, no border fill), colour/stain jitter, blur,
noise and JPEG artefacts; ``stain`` adds H&E stain-matrix jitter (albumentations ``HEStain``,
after Tellez et al. 2018) for other labs' staining; ``robust`` adds to that an isotropic rescale
by 0.8-1.25 (scanners' µm/px and nucleus sizes differ between labs and organs) and, sometimes,
the blur of a lower-magnification scan resampled to the model grid (down- then upsampling).
No shear, no anisotropic stretch, no shifts that would pull border colour into the picture.
"""

from __future__ import annotations

#: Isotropic rescale range of the ``robust`` augmentation.
SCALE_RANGE = (0.8, 1.25)
STRENGTHS = ("none", "default", "stain", "robust")


def build_augmentation(strength: str = "default", crop_size: int | None = None):
    """Return an ``albumentations.Compose`` for training.

    Parameters
    ----------
    strength
        ``"none"`` (only the crop), ``"default"``, ``"stain"`` (default + H&E stain jitter) or
        ``"robust"`` (stain + isotropic rescale, see :data:`SCALE_RANGE`).
    crop_size
        Random square crop taken first. Images smaller than this are placed at a random position
        and mirrored beyond their border, as ``segment`` mirrors plain images (so that a network
        trained on small crops still sees inputs of the crop size, with the context it will get).
        With ``robust`` the crop is then rescaled about its centre (reflecting at its border when
        shrunk); rescaling the crop, not the whole image, keeps it cheap.
    """
    import albumentations as A
    import cv2

    if strength not in STRENGTHS:
        raise ValueError(
            f"unknown augmentation strength {strength!r}; use {', '.join(map(repr, STRENGTHS))}"
        )
    steps = []
    if crop_size:
        steps += [
            A.PadIfNeeded(
                crop_size, crop_size, position="random", border_mode=cv2.BORDER_REFLECT_101
            ),
            A.RandomCrop(crop_size, crop_size),
        ]
    if strength == "robust":
        steps += [
            A.Affine(
                scale=SCALE_RANGE,
                keep_ratio=True,
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.8,
            )
        ]
    if strength in ("stain", "robust"):
        steps += [A.HEStain(method="random_preset", p=0.5)]
    if strength == "robust":  # a 20x scan on a 40x grid: detail lost, then upsampled
        steps += [A.Downscale(scale_range=(0.5, 0.9), p=0.15)]
    if strength != "none":
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
    return A.Compose(steps)
