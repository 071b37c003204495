"""histobatch: batch nucleus segmentation and classification for H&E whole-slide images."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("histobatch")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
