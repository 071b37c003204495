"""Device and numeric-precision choices shared by inference and training."""

from __future__ import annotations

import logging
import os

from histobatch.errors import HistobatchError

logger = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> str:
    """Turn ``auto|cpu|cuda|cuda:N`` into a concrete torch device string.

    Raises
    ------
    HistobatchError
        If CUDA is requested but not available.
    """
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HistobatchError(f"--device {name}: no CUDA device is available; use --device cpu")
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise HistobatchError(
                f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        return name
    if name == "cpu":
        return "cpu"
    raise HistobatchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bfloat16 matrix support (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(device: str, precision: str = "auto"):
    """The autocast dtype for ``precision`` (``auto|fp32|bf16|fp16``), or ``None`` for fp32.

    ``auto`` means fp16 on CUDA, bf16 on CPUs with native bf16 support, else fp32.
    """
    import torch

    precision = precision.lower()
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise HistobatchError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    if device.startswith("cuda"):
        return torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else None


def configure_threads(n_threads: int | None = None) -> int:
    """Set torch's intra-op threads (default: the CPUs this process may use) and return it."""
    import torch

    if n_threads is None:
        n_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    torch.set_num_threads(max(1, n_threads))
    return max(1, n_threads)
