"""Which engine runs the network: ``--runtime torch`` (default) or ``onnx`` (onnxruntime, CPU).

:func:`check_runtime` refuses impossible combinations before any slide is touched;
:func:`make_predictor` builds the predictor for a loaded model. Both the local run
(:mod:`histobatch.runner`) and the Dask workers (:mod:`histobatch.distributed`) use them.
"""

from __future__ import annotations

from histobatch.errors import HistobatchError
from histobatch.model import NucleusModel

RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str, device: str, precision: str) -> None:
    """Stop at once when ``runtime`` cannot run: unknown, not installed, or asked for a GPU or a
    reduced precision (onnxruntime runs here on the CPU in fp32).

    Raises
    ------
    HistobatchError
        With one line saying what to do.
    """
    if runtime not in RUNTIMES:
        raise HistobatchError(f"unknown runtime {runtime!r}; use {' or '.join(RUNTIMES)}")
    if runtime == "torch":
        return
    from histobatch.onnx_predictor import require_onnxruntime

    require_onnxruntime()
    if (device or "auto").lower().startswith("cuda"):
        raise HistobatchError(
            f"--runtime onnx runs on the CPU (onnxruntime's CPUExecutionProvider), not on "
            f"--device {device}; use --device cpu, or --runtime torch for the GPU"
        )
    if precision.lower() in ("bf16", "fp16"):
        raise HistobatchError(
            f"--runtime onnx computes in fp32, not --precision {precision}; "
            "use --precision auto or fp32, or --runtime torch"
        )


def runtime_device(runtime: str, device: str) -> str:
    """The concrete device of a run: the CPU for ``onnx``, else :func:`resolve_device`."""
    if runtime == "onnx":
        return "cpu"
    from histobatch.device import resolve_device

    return resolve_device(device)


def make_predictor(
    model: NucleusModel,
    device: str,
    precision: str,
    runtime: str = "torch",
    threads: int | None = None,
):
    """A predictor for ``model``: :class:`~histobatch.inference.Predictor` (torch, on ``device``
    in ``precision``) or :class:`~histobatch.onnx_predictor.OnnxPredictor` (``threads``
    onnxruntime threads)."""
    if runtime == "onnx":
        from histobatch.onnx_predictor import OnnxPredictor

        return OnnxPredictor(model, threads)
    from histobatch.inference import Predictor

    return Predictor(model, device, precision)
