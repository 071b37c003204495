"""One writer per slide: an advisory lock file next to the slide's output folder.

Two runs pointed at the same output folder (two terminals, two cluster jobs with overlapping slide
lists) must not write one slide's outputs at the same time. Each slide is segmented under an
exclusive ``flock`` on ``OUT/.<slide id>.lock``; a run that finds the lock taken skips that slide
and says who holds it. The kernel drops the lock when its process dies (even by SIGKILL), so a
killed run never leaves a stale lock behind (the file of a killed run stays; it only records the
last holder and is reused).
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SlideBusy(Exception):
    """Another process holds the slide's lock."""

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(holder)


class SlideLock:
    """Exclusive, non-blocking lock on one slide's outputs.

    Parameters
    ----------
    out_root
        The run's output folder.
    slide_id
        The slide's output folder name.

    Raises
    ------
    SlideBusy
        On entering, when another process holds the lock.

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> with SlideLock(root, "a"):
    ...     try:
    ...         SlideLock(root, "a").acquire()
    ...     except SlideBusy:
    ...         print("busy")
    busy
    """

    def __init__(self, out_root: str | Path, slide_id: str) -> None:
        self.path = Path(out_root) / f".{slide_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> SlideLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise SlideBusy(holder) from None
            if _same_file(fd, self.path):
                break
            # The holder released and removed the file between our open and flock: try again.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)  # while still locked, so no one else holds it
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> SlideLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextmanager
def waiting_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), waiting for other holders.

    For short read-modify-write steps shared by concurrent runs, such as rebuilding
    ``cohort.csv`` from the finished slides: the last run to take the lock sees every slide.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock
