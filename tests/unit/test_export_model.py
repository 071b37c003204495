"""``histobatch model export``: ONNX and TorchScript files give the torch network's raw maps at
other batch sizes and tile sizes than the export's, and carry the model's config."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from histobatch.cli.main import cli
from histobatch.export_model import export_model, format_of, onnx_config, torchscript_config
from histobatch.model import ModelConfig, new_model, save_model


def tiny_model(pixel_shuffle: int):
    import torch

    torch.manual_seed(pixel_shuffle)
    config = ModelConfig(
        name=f"tiny-ps{pixel_shuffle}",
        encoder="resnet18",
        encoder_depth=3,
        decoder_channels=[16, 8, 8],
        pixel_shuffle=pixel_shuffle,
        separation="distance",
    )
    model = new_model(config)
    model.network.eval()
    return model


def reference(model, image: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.network(torch.from_numpy(image)).numpy()


# Not the export's (2, 3, 2m, 3m): other batch, height and width (multiples of 16).
SHAPE = (3, 3, 80, 48)


@pytest.mark.parametrize("pixel_shuffle", [1, 2])
def test_onnx_export_matches_torch_with_other_shapes(tmp_path, pixel_shuffle):
    ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install '.[onnx]'")
    pytest.importorskip("onnxscript", reason="needs the onnx extra: pip install '.[onnx]'")
    model = tiny_model(pixel_shuffle)
    path = export_model(model, tmp_path / "tiny.onnx", "onnx")
    image = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (raw,) = session.run(None, {session.get_inputs()[0].name: image})
    expected = reference(model, image)
    assert raw.shape == expected.shape == (3, model.config.n_outputs, 80, 48)
    np.testing.assert_allclose(raw, expected, atol=1e-4)
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["histobatch.config"])["pixel_shuffle"] == pixel_shuffle
    assert onnx_config(path).to_dict() == model.config.to_dict()
    assert not list(tmp_path.glob(".*tmp"))  # written under a temporary name, then renamed


@pytest.mark.parametrize("pixel_shuffle", [1, 2])
def test_torchscript_export_matches_torch_with_other_shapes(tmp_path, pixel_shuffle):
    import torch

    model = tiny_model(pixel_shuffle)
    path = export_model(model, tmp_path / "tiny.pt", "torchscript")
    extra = {"config.json": ""}
    loaded = torch.jit.load(str(path), _extra_files=extra)
    image = np.random.default_rng(1).normal(size=SHAPE).astype(np.float32)
    with torch.no_grad():
        raw = loaded(torch.from_numpy(image)).numpy()
    np.testing.assert_allclose(raw, reference(model, image), atol=1e-4)
    assert json.loads(extra["config.json"]) == model.config.to_dict()
    assert torchscript_config(path).name == model.config.name


def test_cli_model_export(tmp_path):
    folder = save_model(tiny_model(1), tmp_path / "model")
    out = tmp_path / "tiny.ts"
    result = CliRunner().invoke(cli, ["model", "export", "--model", str(folder), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and "torchscript" in result.output
    assert torchscript_config(out).name == "tiny-ps1"


def test_cli_model_export_errors_are_one_line(tmp_path):
    folder = save_model(tiny_model(1), tmp_path / "model")
    unknown = CliRunner().invoke(
        cli, ["model", "export", "--model", str(folder), "-o", str(tmp_path / "m.bin")]
    )
    assert unknown.exit_code == 1 and "pass --format onnx|torchscript" in unknown.output
    missing = CliRunner().invoke(
        cli, ["model", "export", "--model", str(tmp_path), "-o", str(tmp_path / "m.onnx")]
    )
    assert missing.exit_code == 1 and "not a histobatch model folder" in missing.output
    assert "Traceback" not in unknown.output + missing.output


def test_format_from_suffix():
    assert format_of("a.onnx", None) == "onnx"
    assert format_of("a.pt", None) == "torchscript"
    assert format_of("a.bin", "onnx") == "onnx"


def test_model_export_help_lists_formats():
    result = CliRunner().invoke(cli, ["model", "export", "--help"])
    assert result.exit_code == 0 and "onnx|torchscript" in result.output
    assert "model" in CliRunner().invoke(cli, ["--help"]).output
