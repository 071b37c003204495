"""Tile grids on the model grid: cores that partition the slide, plus a margin of context.

A tile's *core* is where it owns nuclei (a nucleus belongs to the tile whose core holds its
centroid); the *margin* around it gives the network context and lets nuclei that straddle a core
border be seen whole. Cores partition the slide exactly, so every nucleus has one owner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """One tile of a grid (coordinates on the model grid, in pixels).

    Attributes
    ----------
    row, col
        Grid position; ``index`` is the row-major index, which fixes the nucleus id order.
    x, y, width, height
        The core box (clipped to the slide).
    margin
        Context added on every side; the read box is the core box grown by ``margin`` and padded
        to the grid's fixed tile size so that tiles batch together.
    """

    row: int
    col: int
    index: int
    x: int
    y: int
    width: int
    height: int
    margin: int
    size: int

    @property
    def read_box(self) -> tuple[int, int, int, int]:
        """``(x, y, width, height)`` of the pixels fed to the network (fixed size)."""
        return self.x - self.margin, self.y - self.margin, self.size, self.size

    @property
    def key(self) -> str:
        """File-name-safe identifier."""
        return f"r{self.row:05d}_c{self.col:05d}"


@dataclass(frozen=True)
class TileGrid:
    """A regular grid of cores of ``core`` pixels over an image of ``width`` × ``height``."""

    width: int
    height: int
    core: int
    margin: int

    def __post_init__(self) -> None:
        if self.core <= 0 or self.margin < 0:
            raise ValueError("tile core must be positive and margin non-negative")

    @classmethod
    def fitted(cls, width: int, height: int, tile_size: int, margin: int, multiple: int = 32):
        """The grid of fewest tiles of at most ``tile_size`` that covers the image, with cores
        shrunk to share it evenly (so that the last row and column are not mostly padding).

        The tile side (core + 2 x margin) stays a multiple of ``multiple`` (the network's stride),
        at most ``tile_size`` rounded down to one.

        Examples
        --------
        >>> grid = TileGrid.fitted(4096, 4096, 2048, 96)
        >>> grid.rows, grid.cols, grid.core, grid.tile_size
        (3, 3, 1376, 1568)
        """
        largest = tile_size // multiple * multiple - 2 * margin
        if largest <= 0:
            raise ValueError("tile size leaves no core")
        cols, rows = -(-width // largest), -(-height // largest)
        core = max(-(-width // cols), -(-height // rows))
        core = -(-(core + 2 * margin) // multiple) * multiple - 2 * margin
        return cls(width, height, min(core, largest), margin)

    @property
    def rows(self) -> int:
        return -(-self.height // self.core)

    @property
    def cols(self) -> int:
        return -(-self.width // self.core)

    @property
    def tile_size(self) -> int:
        return self.core + 2 * self.margin

    def tile(self, row: int, col: int) -> Tile:
        x, y = col * self.core, row * self.core
        return Tile(
            row=row,
            col=col,
            index=row * self.cols + col,
            x=x,
            y=y,
            width=min(self.core, self.width - x),
            height=min(self.core, self.height - y),
            margin=self.margin,
            size=self.tile_size,
        )

    def tiles(self) -> list[Tile]:
        """All tiles in row-major order."""
        return [self.tile(r, c) for r in range(self.rows) for c in range(self.cols)]

    def tiles_on_mask(self, mask: np.ndarray, mask_scale: float, pad: int = 0) -> list[Tile]:
        """Tiles whose core (grown by ``pad`` model pixels) touches a True pixel of ``mask``.

        Parameters
        ----------
        mask
            Boolean mask (e.g. tissue) on a coarser grid.
        mask_scale
            Model pixels per mask pixel.
        pad
            Extra model pixels around each core, so that nuclei at the tissue edge are kept.
        """
        if not mask.any():
            return []
        integral = np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        mh, mw = mask.shape
        selected = []
        for tile in self.tiles():
            x0 = int(np.clip(np.floor((tile.x - pad) / mask_scale), 0, mw))
            y0 = int(np.clip(np.floor((tile.y - pad) / mask_scale), 0, mh))
            x1 = int(np.clip(np.ceil((tile.x + tile.width + pad) / mask_scale), 0, mw))
            y1 = int(np.clip(np.ceil((tile.y + tile.height + pad) / mask_scale), 0, mh))
            if x1 <= x0 or y1 <= y0:
                continue
            total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            if total > 0:
                selected.append(tile)
        return selected

    def owner_of(self, x: float, y: float) -> tuple[int, int]:
        """``(row, col)`` of the core holding point ``(x, y)``."""
        return int(y // self.core), int(x // self.core)
