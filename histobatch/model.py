"""Build, save and load nucleus models.

A histobatch model is a folder holding ``config.json`` (architecture, classes, colours, µm/px,
normalisation, post-processing settings, provenance, metrics) and ``model.safetensors`` (weights).
The network is one segmentation_models_pytorch model whose output channels are split into three
heads (DESIGN.md §2):

- ``np``: one logit per pixel, "is this a nuclear pixel";
- separation maps that tell touching nuclei apart, by ``ModelConfig.separation``:
  ``hv`` (two channels, HoVer-Net horizontal/vertical distances to the nucleus centre in [-1, 1])
  ``distance`` (one channel, distance to the nucleus boundary scaled to 1 at its deepest pixel)
  or ``marker`` (one logit, "is this pixel in a nucleus' core", the deeper half of its distance
  map: a classification, learned sharper and sooner than the regressions);
- ``tp``: one logit per class (background + nucleus types).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from histobatch.errors import ModelError

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
DEFAULT_MODEL = "default"

#: The CoNSeP recipe's classes, index = class id (0 is background).
CONSEP4_CLASSES = ["background", "other", "inflammatory", "epithelial", "spindle"]
CONSEP4_COLORS = [[0, 0, 0], [255, 165, 0], [220, 20, 60], [30, 144, 255], [50, 205, 50]]
#: Separation-head kinds and their channel counts.
SEPARATION_CHANNELS = {"hv": 2, "distance": 1, "marker": 1}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass
class PostprocessConfig:
    """Thresholds that turn network maps into instances (:mod:`histobatch.postprocess`)."""

    np_threshold: float = 0.5
    marker_threshold: float = 0.4
    min_area_px: int = 12
    min_marker_px: int = 3


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model and use it correctly.

    Attributes
    ----------
    name, version
        Identify the model in every output.
    architecture, encoder, encoder_depth, decoder_channels
        Passed to ``segmentation_models_pytorch.create_model``.
    class_names, class_colors
        Index ``i`` describes type id ``i``; index 0 is the background.
    mpp
        Micrometres per pixel the model was trained at; slides are resampled to it.
    separation
        How the network tells touching nuclei apart: ``hv``, ``distance`` or ``marker`` (see
        module doc).
    mean, std
        Per-channel normalisation of RGB values scaled to [0, 1].
    pixel_shuffle
        The network runs on a grid this many times coarser than its input and output: the RGB
        input is folded into ``3 * f²`` channels (``PixelUnshuffle``) and the output unfolded again
        (``PixelShuffle``), so maps come out at the full resolution of ``mpp`` (e.g. 40x) for the
        compute of a network at ``f`` times the pixel size (e.g. 20x). 1 = a plain network.
    refine_channels
        With ``pixel_shuffle`` > 1: width of a small residual refinement at full resolution
        (:class:`histobatch.shuffle_network.FullResolutionRefinement`); 0 = none.
    """

    name: str = "untrained"
    version: str = "0"
    architecture: str = "Unet"
    encoder: str = "resnet18"
    encoder_depth: int = 5
    decoder_channels: list[int] = field(default_factory=lambda: [256, 128, 64, 32, 16])
    class_names: list[str] = field(default_factory=lambda: list(CONSEP4_CLASSES))
    class_colors: list[list[int]] = field(default_factory=lambda: [list(c) for c in CONSEP4_COLORS])
    mpp: float = 0.25
    separation: str = "hv"
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    pixel_shuffle: int = 1
    refine_channels: int = 0
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        """Number of type classes including the background."""
        return len(self.class_names)

    @property
    def n_separation(self) -> int:
        """Channels of the separation head (2 for ``hv``, 1 for ``distance``)."""
        return SEPARATION_CHANNELS[self.separation]

    @property
    def type_offset(self) -> int:
        """Index of the first type logit in the network output."""
        return 1 + self.n_separation

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (encoder strides x pixel shuffle)."""
        return 2**self.encoder_depth * self.pixel_shuffle

    @property
    def n_outputs(self) -> int:
        """Total output channels of the network: np (1) + separation + tp (n_classes)."""
        return self.type_offset + self.n_classes

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build a config from a dictionary, ignoring unknown keys (newer files stay readable)."""
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        if isinstance(kwargs.get("postprocess"), dict):
            pp_known = set(PostprocessConfig.__dataclass_fields__)
            kwargs["postprocess"] = PostprocessConfig(
                **{k: v for k, v in kwargs["postprocess"].items() if k in pp_known}
            )
        config = cls(**kwargs)
        if len(config.class_colors) != len(config.class_names):
            raise ValueError("class_colors and class_names must have the same length")
        if config.separation not in SEPARATION_CHANNELS:
            raise ValueError(
                f"separation must be one of {', '.join(SEPARATION_CHANNELS)}, "
                f"got {config.separation!r}"
            )
        if not config.mpp or config.mpp <= 0:
            raise ValueError(f"mpp must be positive, got {config.mpp!r}")
        if config.pixel_shuffle not in (1, 2, 4):
            raise ValueError(f"pixel_shuffle must be 1, 2 or 4, got {config.pixel_shuffle!r}")
        if config.refine_channels and config.pixel_shuffle == 1:
            raise ValueError(
                "refine_channels needs pixel_shuffle > 1 (the network is at full resolution)"
            )
        return config


def build_network(config: ModelConfig, encoder_weights: str | None = None):
    """Create the segmentation network described by ``config``.

    Parameters
    ----------
    config
        Architecture and heads.
    encoder_weights
        ``None`` (random initialisation) or e.g. ``"imagenet"``, which needs a reachable model hub.

    Returns
    -------
    torch.nn.Module
        A network mapping ``(B, 3, H, W)`` to ``(B, config.n_outputs, H, W)``.
    """
    import segmentation_models_pytorch as smp

    factor = config.pixel_shuffle
    try:
        network = smp.create_model(
            config.architecture,
            encoder_name=config.encoder,
            encoder_depth=config.encoder_depth,
            encoder_weights=encoder_weights,
            decoder_channels=list(config.decoder_channels)[: config.encoder_depth],
            in_channels=3 * factor**2,
            classes=config.n_outputs * factor**2,
        )
    except KeyError as exc:  # smp lists the valid names in its message
        raise ModelError(f"unknown architecture or encoder: {exc}") from None
    if factor == 1:
        return network
    from histobatch.shuffle_network import PixelShuffleNetwork

    return PixelShuffleNetwork(network, factor, config.refine_channels)


@dataclass
class NucleusModel:
    """A network together with its config."""

    config: ModelConfig
    network: Any  # torch.nn.Module; Any keeps torch out of module import time
    path: Path | None = None


def resolve_model_path(name_or_path: str | Path) -> Path:
    """Return the folder of a model given ``"default"`` or a path."""
    if str(name_or_path) == DEFAULT_MODEL:
        path = Path(str(resources.files("histobatch") / "models" / DEFAULT_MODEL))
        if not (path / WEIGHTS_NAME).is_file():
            raise ModelError(
                "the packaged default model is missing from this installation; "
                "pass --model PATH to a model folder (histobatch train writes one)",
                path,
            )
        return path
    return Path(name_or_path)


def load_model(name_or_path: str | Path = DEFAULT_MODEL, device: str = "cpu") -> NucleusModel:
    """Load a model folder (or the packaged default) in evaluation mode.

    Raises
    ------
    ModelError
        If the folder, its config or its weights are missing or do not match.
    """
    import torch
    from safetensors.torch import load_file

    path = resolve_model_path(name_or_path)
    config_path = path / CONFIG_NAME
    weights_path = path / WEIGHTS_NAME
    if not path.is_dir():
        raise ModelError("model folder not found; pass --model default or a model folder", path)
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelError(
            f"not a histobatch model folder (needs {CONFIG_NAME} and {WEIGHTS_NAME})", path
        )
    try:
        config = ModelConfig.from_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError) as exc:
        raise ModelError(f"invalid {CONFIG_NAME}: {exc}", path) from None
    network = build_network(config)
    try:
        state = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise ModelError(f"cannot read {WEIGHTS_NAME}: {exc}", path) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ModelError(f"weights do not match config.json: {first}", path) from None
    network.eval().to(torch.device(device))
    return NucleusModel(config=config, network=network, path=path)


def save_model(model: NucleusModel, folder: str | Path, half: bool = True) -> Path:
    """Write ``config.json`` and ``model.safetensors`` to ``folder``.

    Parameters
    ----------
    half
        Store floating-point weights as float16 (halves the size; they are loaded back as
        float32). Inference accuracy is unaffected at the precision these networks need.
    """
    import torch
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {}
    for key, value in model.network.state_dict().items():
        value = value.detach().cpu().contiguous()
        if half and value.is_floating_point():
            value = value.to(torch.float16)
        state[key] = value
    save_file(state, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
    return folder


def new_model(config: ModelConfig, encoder_weights: str | None = None) -> NucleusModel:
    """Create a model with freshly initialised weights."""
    return NucleusModel(config=config, network=build_network(config, encoder_weights))
