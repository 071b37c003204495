import json
from dataclasses import replace

import pytest
import torch

from histobatch.errors import ModelError
from histobatch.model import ModelConfig, load_model, new_model, save_model


def test_save_load_roundtrip(tmp_path):
    config = ModelConfig(name="t", encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8])
    model = new_model(config)
    x = torch.rand(1, 3, 64, 64)
    model.network.eval()
    with torch.no_grad():
        before = model.network(x)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.name == "t" and loaded.config.n_outputs == 8
    with torch.no_grad():
        after = loaded.network(x)
    assert after.shape == (1, 8, 64, 64)
    assert torch.allclose(before, after, atol=5e-2)  # float16 storage


def test_forward_and_backward_tiny():
    model = new_model(ModelConfig(encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8]))
    out = model.network(torch.rand(2, 3, 64, 64))
    out.mean().backward()
    network = model.network
    for module in (network.encoder.conv1, network.decoder, network.segmentation_head):
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters() if p.ndim > 1
        )


def test_bad_model_folders(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        load_model(tmp_path / "empty")
    model = new_model(ModelConfig(encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8]))
    save_model(model, tmp_path / "m")
    data = json.loads((tmp_path / "m" / "config.json").read_text())
    data["class_names"] = data["class_names"] + ["extra"]
    data["class_colors"] = data["class_colors"] + [[1, 2, 3]]
    (tmp_path / "m" / "config.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="do not match"):
        load_model(tmp_path / "m")


def test_unknown_encoder_is_a_clear_error():
    with pytest.raises(ModelError, match="unknown"):
        new_model(ModelConfig(encoder="resnet-does-not-exist"))


def test_pixel_shuffle_network_keeps_the_resolution_and_saves_like_a_plain_one(tmp_path):
    config = ModelConfig(
        encoder="resnet18", encoder_depth=3, decoder_channels=[16, 8, 8], pixel_shuffle=2
    )
    assert config.size_multiple == 16
    model = new_model(config)
    inner = model.network.inner
    assert inner.encoder.conv1.in_channels == 12  # 2x2 pixel blocks as channels
    assert model.network.encoder is inner.encoder
    assert model.network.segmentation_head is inner.segmentation_head
    x = torch.rand(2, 3, 32, 48)
    out = model.network(x)
    assert out.shape == (2, config.n_outputs, 32, 48)
    out.mean().backward()
    assert inner.encoder.conv1.weight.grad.abs().sum() > 0
    # Each output pixel of a 2x2 block has its own channel of the inner network's output.
    model.network.eval()
    with torch.no_grad():
        raw = inner(model.network.unshuffle(x))
        assert torch.equal(model.network(x)[:, :, 1::2, 0::2], raw[:, 2::4])
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config.pixel_shuffle == 2
    with torch.no_grad():
        assert torch.allclose(loaded.network(x), model.network(x), atol=5e-2)


def test_refinement_starts_from_the_network_without_it_and_learns(tmp_path):
    """A refinement added to a trained pixel-shuffle network leaves its output unchanged until
    trained (zero-initialised correction), then its full-resolution features get gradients."""
    base = ModelConfig(encoder_depth=3, decoder_channels=[16, 8, 8], pixel_shuffle=2)
    plain = new_model(base)
    save_model(plain, tmp_path / "plain")
    refined = new_model(replace(base, refine_channels=4))
    state = {k: v for k, v in plain.network.state_dict().items()}
    missing, _ = refined.network.load_state_dict(state, strict=False)
    assert missing and all(key.startswith("refine.") for key in missing)
    x = torch.rand(2, 3, 32, 32)
    plain.network.eval()
    refined.network.eval()
    with torch.no_grad():
        assert torch.allclose(refined.network(x), plain.network(x), atol=1e-6)
    refined.network.train()
    refined.network(x).square().mean().backward()
    assert refined.network.refine.correction.weight.grad.abs().sum() > 0
    save_model(refined, tmp_path / "refined")
    assert load_model(tmp_path / "refined").config.refine_channels == 4


def test_refinement_needs_a_pixel_shuffle_network():
    with pytest.raises(ValueError, match="refine_channels"):
        ModelConfig.from_dict({"refine_channels": 8})


def test_pixel_shuffle_factor_is_checked():
    with pytest.raises(ValueError, match="pixel_shuffle"):
        ModelConfig.from_dict({"pixel_shuffle": 3})
