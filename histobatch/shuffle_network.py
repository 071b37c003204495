"""A segmentation network run on a coarser grid than its input and output (pixel shuffle).

``PixelUnshuffle(f)`` folds every ``f × f`` block of the RGB input into ``3 f²`` channels, the
inner network runs on that ``f`` times coarser grid, and ``PixelShuffle(f)`` unfolds its
``C f²`` output channels back into ``C`` full-resolution maps (Shi et al., "Real-time single image
and video super-resolution", CVPR 2016). Nothing of the input is lost, and the output keeps the
input's resolution, for about the compute of the inner network at the coarse grid: 40x maps
(thin gaps between touching nuclei, 40x nucleus outlines) at the cost of a 20x network.

The inner network's finest learned features are at half its grid (a ResNet stem strides by 2),
i.e. 10x for a 20x grid. An optional *refinement* adds what a few convolutions at the full
resolution see: ``maps + conv([features(image), maps])``, the last convolution initialised to
zero so that a network without it loads and starts from exactly its old output.
"""

from __future__ import annotations

import torch
from torch import nn


class PixelShuffleNetwork(nn.Module):
    """Wrap ``inner`` (``3 f²`` input and ``C f²`` output channels) to map ``(B, 3, H, W)`` to
    ``(B, C, H, W)``; ``H`` and ``W`` must be multiples of ``f`` times the inner network's own
    multiple.

    The inner network's ``encoder`` and ``segmentation_head`` are exposed so that training can
    freeze the one and reset the other as for a plain network.
    """

    def __init__(self, inner: nn.Module, factor: int, refine_channels: int = 0) -> None:
        super().__init__()
        self.inner = inner
        self.factor = factor
        self.unshuffle = nn.PixelUnshuffle(factor)
        self.shuffle = nn.PixelShuffle(factor)
        self.refine = None
        if refine_channels:
            n_maps = inner.segmentation_head[0].out_channels // factor**2
            self.refine = FullResolutionRefinement(n_maps, refine_channels)

    @property
    def encoder(self) -> nn.Module:
        """The inner network's encoder."""
        return self.inner.encoder

    @property
    def segmentation_head(self) -> nn.Module:
        """The inner network's output layer."""
        return self.inner.segmentation_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution maps for a full-resolution image batch."""
        maps = self.shuffle(self.inner(self.unshuffle(x)))
        return maps if self.refine is None else self.refine(x, maps)


class FullResolutionRefinement(nn.Module):
    """Residual correction of ``n_maps`` maps from features of the full-resolution image.

    Two 3×3 convolutions (``channels`` wide, batch norm, ReLU) on the image, concatenated with the
    maps, then one 3×3 convolution to ``n_maps`` channels that starts at zero.
    """

    def __init__(self, n_maps: int, channels: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.correction = nn.Conv2d(channels + n_maps, n_maps, 3, padding=1)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, image: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """``maps`` plus the correction."""
        return maps + self.correction(torch.cat([self.features(image), maps], dim=1))
