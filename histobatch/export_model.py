"""Portable copies of a nucleus network: ONNX and TorchScript files that describe themselves.

Both formats hold the raw network, ``(B, 3, H, W)`` float32 to ``(B, 1 + S + K, H, W)`` float32,
with the batch, height and width free (``H`` and ``W`` multiples of the config's
:attr:`~histobatch.model.ModelConfig.size_multiple`). The input is RGB scaled to [0, 1] and
normalised with the config's ``mean`` and ``std``; the output channels are the nuclear-pixel logit,
the separation maps and the type logits (see :mod:`histobatch.model`). The model's ``config.json``
travels inside the file, so an export is enough to use the model correctly:

- ONNX: ``metadata_props`` ``histobatch.config`` (the JSON), ``histobatch.version``,
  ``histobatch.input`` and ``histobatch.output`` (one-line descriptions). Written with PyTorch's
  ``torch.export``-based exporter (``dynamo=True``, needs ``onnxscript``), the one PyTorch keeps;
  the legacy TorchScript-based exporter also works with these networks but is deprecated.
- TorchScript: ``torch.jit.trace``, with ``config.json`` as an extra file
  (``torch.jit.load(path, _extra_files={"config.json": ""})``).
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from histobatch import __version__
from histobatch.errors import HistobatchError
from histobatch.model import CONFIG_NAME, ModelConfig, NucleusModel

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "torchscript")
#: File suffixes that name a format when ``--format`` is not given.
SUFFIXES = {
    ".onnx": "onnx",
    ".pt": "torchscript",
    ".ts": "torchscript",
    ".torchscript": "torchscript",
}
#: ONNX metadata keys.
CONFIG_KEY = "histobatch.config"
INPUT_TEXT = (
    "image: float32 (batch, 3, height, width), RGB / 255 normalised with config mean/std; "
    "height and width multiples of 2**encoder_depth * pixel_shuffle"
)
OUTPUT_TEXT = (
    "raw: float32 (batch, 1 + separation channels + classes, height, width): nuclear-pixel logit, "
    "separation maps (config.separation), type logits (config.class_names)"
)
#: The ONNX operator set asked of the exporter.
OPSET = 18
INSTALL_ONNX = "pip install 'histobatch[onnx]'"


def format_of(path: str | Path, fmt: str | None) -> str:
    """The export format: ``fmt`` if given, else the one named by the file suffix.

    Raises
    ------
    HistobatchError
        For an unknown format or a suffix that names none.
    """
    if fmt:
        if fmt not in FORMATS:
            raise HistobatchError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise HistobatchError(
            f"cannot tell the format from {Path(path).name!r}; pass --format onnx|torchscript"
        )
    return SUFFIXES[suffix]


def example_input(config: ModelConfig):
    """A small input for tracing: batch 2 and unequal sides, so nothing is taken as fixed."""
    import torch

    multiple = config.size_multiple
    return torch.zeros(2, 3, 2 * multiple, 3 * multiple)


def export_onnx(model: NucleusModel, out: str | Path) -> Path:
    """Write ``model``'s network as ONNX with free batch, height and width; return the path.

    The file is written under a temporary name and renamed when complete.

    Raises
    ------
    HistobatchError
        If ``onnxscript`` (the exporter's dependency) is missing or the export fails.
    """
    import torch

    try:
        import onnxscript  # noqa: F401  (the torch.export-based exporter needs it)
    except ImportError:
        raise HistobatchError(f"ONNX export needs onnx and onnxscript: {INSTALL_ONNX}") from None
    network = model.network.float().eval().cpu()
    free = torch.export.Dim.DYNAMIC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                network,
                (example_input(model.config),),
                None,
                dynamo=True,
                verbose=False,
                opset_version=OPSET,
                input_names=["image"],
                output_names=["raw"],
                dynamic_shapes=({0: free, 2: free, 3: free},),
            )
        except Exception as exc:  # the exporter raises many kinds; one line is enough here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HistobatchError(f"ONNX export failed: {first}") from None
    props = program.model.metadata_props
    props[CONFIG_KEY] = json.dumps(model.config.to_dict())
    props["histobatch.version"] = __version__
    props["histobatch.input"] = INPUT_TEXT
    props["histobatch.output"] = OUTPUT_TEXT
    out = Path(out)
    temporary = _temporary(out)
    try:
        program.save(str(temporary), external_data=False)  # one file: renamed whole
        os.replace(temporary, out)
    finally:
        temporary.unlink(missing_ok=True)
    return out


def export_torchscript(model: NucleusModel, out: str | Path) -> Path:
    """Write ``model``'s network as traced TorchScript with ``config.json`` inside; return the path.

    PyTorch 2.14 deprecates TorchScript (its warnings are silenced here); the traced module still
    loads with ``torch.jit.load`` and accepts any batch, height and width.
    """
    import torch

    network = model.network.float().eval().cpu()
    out = Path(out)
    temporary = _temporary(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            traced = torch.jit.trace(network, example_input(model.config))
        try:
            torch.jit.save(
                traced,
                str(temporary),
                _extra_files={CONFIG_NAME: json.dumps(model.config.to_dict())},
            )
            os.replace(temporary, out)
        finally:
            temporary.unlink(missing_ok=True)
    return out


def export_model(model: NucleusModel, out: str | Path, fmt: str) -> Path:
    """Export ``model`` as ``fmt`` (``onnx`` or ``torchscript``) to ``out``; return the path."""
    out = Path(out)
    if out.parent and not out.parent.is_dir():
        raise HistobatchError("the folder of -o does not exist", out.parent)
    if fmt == "onnx":
        return export_onnx(model, out)
    if fmt == "torchscript":
        return export_torchscript(model, out)
    raise HistobatchError(f"unknown format {fmt!r}; use {' or '.join(FORMATS)}")


def onnx_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` stored in an ONNX export (needs the ``onnx`` package)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if CONFIG_KEY not in props:
        raise HistobatchError("not a histobatch ONNX export (no histobatch.config metadata)", path)
    return ModelConfig.from_dict(json.loads(props[CONFIG_KEY]))


def torchscript_config(path: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` stored in a TorchScript export."""
    import torch

    extra = {CONFIG_NAME: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    return ModelConfig.from_dict(json.loads(extra[CONFIG_NAME]))


def _temporary(out: Path) -> Path:
    return out.with_name(f".{out.name}.{os.getpid()}.tmp")
