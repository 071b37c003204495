"""The process's resident memory, for backpressure under ``--max-memory``."""

from __future__ import annotations

import os


def rss_bytes() -> int:
    """Current resident set size of this process in bytes (0 when it cannot be read)."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:
        pass
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
