import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from histobatch.stitch import global_offsets
from histobatch.tiling import TileGrid


@settings(max_examples=60, deadline=None)
@given(
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    core=st.integers(32, 300),
    margin=st.integers(0, 64),
)
def test_cores_partition_the_image(width, height, core, margin):
    grid = TileGrid(width, height, core, margin)
    cover = np.zeros((height, width), np.int32)
    for tile in grid.tiles():
        assert tile.width > 0 and tile.height > 0
        cover[tile.y : tile.y + tile.height, tile.x : tile.x + tile.width] += 1
        x, y, w, h = tile.read_box
        assert w == h == core + 2 * margin
    assert (cover == 1).all()


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0, 699.999),
    y=st.floats(0, 499.999),
    core=st.integers(32, 300),
)
def test_every_point_has_exactly_one_owner(x, y, core):
    grid = TileGrid(700, 500, core, 16)
    owners = [t for t in grid.tiles() if t.x <= x < t.x + t.width and t.y <= y < t.y + t.height]
    assert len(owners) == 1
    assert (owners[0].row, owners[0].col) == grid.owner_of(x, y)


def test_tiles_on_mask_keeps_only_tissue_tiles():
    grid = TileGrid(400, 400, 100, 10)
    mask = np.zeros((40, 40), bool)  # 10 model px per mask px
    mask[5, 5] = True  # model pixels 50-60: inside tile (0, 0)
    chosen = grid.tiles_on_mask(mask, mask_scale=10.0)
    assert [(t.row, t.col) for t in chosen] == [(0, 0)]
    # A pad reaching into the neighbours' cores selects them too.
    padded = grid.tiles_on_mask(mask, mask_scale=10.0, pad=50)
    assert {(t.row, t.col) for t in padded} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert grid.tiles_on_mask(np.zeros((40, 40), bool), 10.0) == []


def test_global_offsets_follow_tile_order():
    assert global_offsets({3: 2, 0: 5}, 5).tolist() == [0, 5, 5, 5, 7]


@settings(max_examples=80, deadline=None)
@given(
    width=st.integers(1, 9000),
    height=st.integers(1, 9000),
    tile_size=st.sampled_from([256, 512, 1280, 2048]),
    margin=st.sampled_from([0, 32, 96]),
)
def test_fitted_grid_needs_no_more_tiles_and_wastes_less(width, height, tile_size, margin):
    """The fitted grid has as many tiles as the plain one or fewer, each no larger and a multiple
    of 32, and its cores still partition the image (with less padding)."""
    plain = TileGrid(width, height, tile_size - 2 * margin, margin)
    fitted = TileGrid.fitted(width, height, tile_size, margin)
    assert fitted.tile_size % 32 == 0 and fitted.tile_size <= tile_size
    assert fitted.rows <= plain.rows and fitted.cols <= plain.cols
    assert fitted.rows * fitted.core >= height and fitted.cols * fitted.core >= width
    fitted_px = fitted.rows * fitted.cols * fitted.tile_size**2
    assert fitted_px <= plain.rows * plain.cols * plain.tile_size**2


def test_fitted_grid_example():
    """A 4096-px image with 2048-px tiles and 192-px margins: the plain grid runs 9 tiles of
    2048 (37.7 Mpx through the network for 16.8 Mpx of image), the fitted one 9 of 1760."""
    grid = TileGrid.fitted(4096, 4096, 2048, 192)
    assert (grid.rows, grid.cols, grid.tile_size, grid.core) == (3, 3, 1760, 1376)
