"""Output writers: OME-Zarr label pyramids and the per-nucleus table."""
