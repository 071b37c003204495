"""Work-arounds that let the scverse writers run with this project's pins (pandas 3, dask 2026).

Python 3.11 gets at most anndata 0.12 and spatialdata 0.7 (the releases that support pandas 3 and
the newest dask need Python 3.12), and those need two small bridges, each applied only where it is
needed:

- anndata < 0.13 cannot write pandas 3's default string arrays; :func:`object_strings` makes
  pandas build the frames with object strings (as pandas 2 did) while the table is assembled and
  written.
- spatialdata < 0.7.3 hands ome-zarr a Dask chunk grid (``((64, 64, 32), ...)``) where ome-zarr
  >= 0.16 with dask >= 2026.3 expects a chunk shape (spatialdata issue 1059, fixed in 0.7.3 whose
  metadata caps dask below 2026.1.2); :func:`regular_chunks` turns the grid into its regular chunk
  shape while a SpatialData store is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version


def _release(package: str) -> tuple[int, ...]:
    numbers = []
    for part in version(package).split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        numbers.append(int(digits) if digits else 0)
    return tuple(numbers)


@contextmanager
def object_strings() -> Iterator[None]:
    """Build pandas string data as ``object`` arrays inside (pandas >= 3 with anndata < 0.13)."""
    import pandas as pd

    if _release("pandas") < (3,) or _release("anndata") >= (0, 13):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*future.infer_string.*")
        with pd.option_context("future.infer_string", False):
            yield


@contextmanager
def regular_chunks() -> Iterator[None]:
    """Give ome-zarr a chunk shape instead of a Dask chunk grid inside (spatialdata < 0.7.3)."""
    if _release("spatialdata") >= (0, 7, 3):
        yield
        return
    import ome_zarr.writer as writer

    original = writer._retuple

    def retuple(chunks, shape):
        if (
            isinstance(chunks, tuple | list)
            and chunks
            and all(isinstance(axis, tuple | list) for axis in chunks)
        ):
            chunks = tuple(int(axis[0]) for axis in chunks)
        return original(chunks, shape)

    writer._retuple = retuple
    try:
        yield
    finally:
        writer._retuple = original
