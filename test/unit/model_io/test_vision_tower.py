"""SigLIP tower and projector: checkpoint key layout, features before post_layernorm."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from stream_omni_ros.errors import CheckpointError, InputError
from stream_omni_ros.model.vision import (
    SiglipTower, VisionSettings, build_projector, encode_image)

PREFIX = "model.vision_tower."


def test_tower_keys_follow_the_checkpoint_and_have_no_head(tiny_settings):
    keys = set(SiglipTower(tiny_settings()).state_dict())
    assert all(key.startswith("vision_tower.vision_model.") for key in keys)
    assert "vision_tower.vision_model.post_layernorm.weight" in keys
    assert not any(".head." in key for key in keys)
    layers = {key.split(".")[4] for key in keys if ".encoder.layers." in key}
    assert layers == {"0", "1"}


def vision_layer_keys(count: int) -> list[str]:
    """Weight-map keys of `count` vision encoder layers."""
    return [f"{PREFIX}vision_tower.vision_model.encoder.layers.{i}.mlp.fc1.weight"
            for i in range(count)]


def test_layer_count_comes_from_the_weight_map(tiny_raw):
    raw = tiny_raw()
    del raw["vision_config"]["num_hidden_layers"]
    assert VisionSettings.from_config(raw, vision_layer_keys(3)).num_hidden_layers == 3
    with pytest.raises(CheckpointError, match="num_hidden_layers=3"):
        VisionSettings.from_config(tiny_raw(vision_config={**raw["vision_config"],
                                                           "num_hidden_layers": 3}),
                                   vision_layer_keys(2))


def test_full_so400m_weights_use_26_of_27_layers(tiny_raw):
    raw = tiny_raw(image_grid_pinpoints="(1x1),...,(6x6)")
    del raw["vision_config"]
    assert VisionSettings.from_config(raw, vision_layer_keys(27)).num_hidden_layers == 26
    assert VisionSettings.from_config(raw).num_hidden_layers == 26


def test_features_are_taken_before_post_layernorm(tiny_settings, tmp_path):
    torch.manual_seed(0)
    tower = SiglipTower(tiny_settings()).eval()
    with torch.no_grad():
        tower.vision_tower.vision_model.post_layernorm.weight.uniform_(0.5, 2.0)
    save_file({PREFIX + k: v.contiguous() for k, v in tower.state_dict().items()},
              tmp_path / "vision.safetensors")
    loaded = SiglipTower(tiny_settings()).eval()
    stored = load_file(tmp_path / "vision.safetensors")
    loaded.load_state_dict({k[len(PREFIX):]: v for k, v in stored.items()}, strict=True)
    pixels = torch.rand(2, 3, 56, 56) * 2 - 1
    with torch.inference_mode():
        features = loaded(pixels)
        full = loaded.vision_tower.vision_model(pixels).last_hidden_state
        normalised = loaded.vision_tower.vision_model.post_layernorm(features)
    assert features.shape == (2, 16, 32)
    torch.testing.assert_close(normalised, full)
    assert not torch.allclose(features, full, atol=1e-2)


def test_tower_rejects_wrong_pixel_shape(tiny_settings):
    with pytest.raises(InputError, match=r"\[n, 3, 56, 56\]"):
        SiglipTower(tiny_settings())(torch.zeros(1, 3, 384, 384))


def test_mlp2x_gelu_projector_keys_and_exact_gelu():
    projector = build_projector("mlp2x_gelu", 32, 64)
    assert set(projector.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    x = torch.randn(3, 32)
    hidden = projector[0](x)
    erf_gelu = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))
    torch.testing.assert_close(projector(x), projector[2](erf_gelu))


@pytest.mark.parametrize(("kind", "keys"), [
    ("linear", {"weight", "bias"}), ("identity", set()),
    ("mlp3x_gelu", {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"})])
def test_other_projector_types(kind, keys):
    assert set(build_projector(kind, 64, 64).state_dict()) == keys


@pytest.mark.parametrize(("kind", "mm_hidden"), [("pooler", 64), ("identity", 32)])
def test_unsupported_projector_raises_checkpoint_error(kind, mm_hidden):
    with pytest.raises(CheckpointError, match=kind):
        build_projector(kind, mm_hidden, 64)


def test_encode_image_end_to_end(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="anyres_max_1")
    tower = SiglipTower(settings).eval()
    projector = build_projector(settings.projector_type, settings.mm_hidden_size, 64)
    newline = torch.randn(64)
    rgb = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    tokens = encode_image(rgb, settings, tower, projector, newline)
    assert tokens.shape == (36, 64)
    assert torch.equal(tokens[16 + 4], newline)
