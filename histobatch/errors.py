"""Exceptions that the CLI turns into one-line messages."""

from __future__ import annotations

from pathlib import Path


class HistobatchError(Exception):
    """An error caused by the user's input, reported without a traceback.

    Parameters
    ----------
    message
        What went wrong and what to do about it.
    path
        The file the error is about, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class SlideError(HistobatchError):
    """A slide that cannot be opened or read."""


class ModelError(HistobatchError):
    """A model folder that is missing, invalid or incompatible."""
