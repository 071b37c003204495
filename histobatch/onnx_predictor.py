"""The ``--runtime onnx`` predictor: the network exported to ONNX once, run by onnxruntime.

:class:`OnnxPredictor` has the interface of :class:`histobatch.inference.Predictor` (``model``,
``device``, ``dtype``, ``runtime`` and ``__call__`` from ``(B, H, W, 3)`` uint8 tiles to
``(B, 2 + K, H, W)`` float32 maps), so the pipeline, the Dask workers and the run fingerprint use
either. The network is exported with :func:`histobatch.export_model.export_onnx` into a cache file
named by a digest of the weights and config (``$HISTOBATCH_CACHE_DIR``, else
``$XDG_CACHE_HOME/histobatch`` or ``~/.cache/histobatch``, else a folder in the temporary
directory), so a model is exported once per machine, not once per run. The cache is not the
model folder: the packaged default model lives inside the installed package (or the source
checkout, for an editable install), which should stay as installed.

onnxruntime runs on the CPU (``CPUExecutionProvider``) in fp32, with ``threads`` intra-op threads
(default: the CPUs this process may use), one inter-op thread and no spin-waiting, so that idle
model threads leave the cores to the tile readers and post-processing threads beside them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from histobatch.errors import HistobatchError, ModelError
from histobatch.export_model import INSTALL_ONNX, OPSET, export_onnx
from histobatch.inference import output_to_maps
from histobatch.model import WEIGHTS_NAME, NucleusModel

logger = logging.getLogger(__name__)

#: Environment variable naming the cache folder.
CACHE_ENV = "HISTOBATCH_CACHE_DIR"
#: Part of the cache key: raise it when the export changes so that old files are not reused.
CACHE_FORMAT = 1


def require_onnxruntime():
    """Import onnxruntime, or stop with the install line."""
    try:
        import onnxruntime
    except ImportError:
        raise HistobatchError(
            f"--runtime onnx needs onnxruntime, which is not installed: {INSTALL_ONNX}"
        ) from None
    return onnxruntime


def cache_folder() -> Path:
    """Where exported models are kept (see the module notes)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "histobatch"


def model_digest(model: NucleusModel) -> str:
    """SHA-256 of the model's config and weights (the weights file if the model has a folder)."""
    digest = hashlib.sha256()
    digest.update(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    digest.update(f"format {CACHE_FORMAT} opset {OPSET}".encode())
    weights = Path(model.path) / WEIGHTS_NAME if model.path else None
    if weights is not None and weights.is_file():
        with open(weights, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    else:
        for name, tensor in model.network.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cached_onnx(model: NucleusModel, folder: str | Path | None = None) -> Path:
    """The ONNX file of ``model`` in the cache, exported first if it is not there yet."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in model.config.name)
    file_name = f"{name}-{model_digest(model)[:16]}.onnx"
    candidates = [Path(folder)] if folder else [cache_folder()]
    if not folder:
        candidates.append(Path(tempfile.gettempdir()) / f"histobatch-{os.getuid()}")
    for base in candidates:
        path = base / "onnx" / file_name
        if path.is_file():
            return path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(path.parent, os.W_OK):
            continue
        logger.info("exporting model %s to ONNX once: %s", model.config.name, path)
        return export_onnx(model, path)
    raise HistobatchError(
        f"no writable folder for the ONNX export of the model; set {CACHE_ENV} to one"
    )


class OnnxPredictor:
    """Runs a nucleus model's ONNX export on batches of RGB tiles with onnxruntime (CPU, fp32).

    Parameters
    ----------
    model
        A loaded model; its network is exported to the cache unless it is there already.
    threads
        onnxruntime intra-op threads; default: the CPUs this process may use.
    cache
        Folder for the export instead of :func:`cache_folder`.
    """

    runtime = "onnx"

    def __init__(
        self, model: NucleusModel, threads: int | None = None, cache: str | Path | None = None
    ) -> None:
        ort = require_onnxruntime()
        self.model = model
        self.device = "cpu"
        self.dtype = None  # fp32, as the torch predictor's "no autocast"
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        self.threads = max(1, threads)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.path = cached_onnx(model, cache)
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # a damaged cache file: export again, once
            logger.warning("cached ONNX export unreadable (%s); exporting again", exc)
            self.path.unlink(missing_ok=True)
            self.path = cached_onnx(model, cache)
            try:
                self.session = ort.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as again:
                raise ModelError(
                    f"onnxruntime cannot load the export: {again}", self.path
                ) from None
        self._input = self.session.get_inputs()[0].name
        config = model.config
        self._mean = np.asarray(config.mean, np.float32).reshape(1, 3, 1, 1) * 255
        self._std = np.asarray(config.std, np.float32).reshape(1, 3, 1, 1) * 255

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Maps for a batch of tiles, as :meth:`histobatch.inference.Predictor.__call__`.

        Parameters
        ----------
        batch
            ``(B, H, W, 3)`` uint8 RGB.

        Returns
        -------
        numpy.ndarray
            ``(B, 2 + K, H, W)`` float32: nuclear probability, centre distance, K class
            probabilities.
        """
        import torch

        image = batch.transpose(0, 3, 1, 2).astype(np.float32)
        image = np.ascontiguousarray((image - self._mean) / self._std)
        raw = self.session.run(None, {self._input: image})[0]
        with torch.inference_mode():
            return output_to_maps(torch.from_numpy(raw), self.model.config).numpy()
