"""The vision tower, projector and newline load from the checkpoint and feed encode_image."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from stream_omni_ros.errors import CheckpointError, InputError
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.config import VISION_PREFIX
from stream_omni_ros.model.tiny_checkpoint import write_safetensors_shards, write_tiny_checkpoint

FP32 = LoadOptions(dtype="fp32")
TOWER_KEY = VISION_PREFIX + "vision_model.encoder.layers.1.mlp.fc2.weight"


@pytest.fixture(scope="module")
def anyres_folder(tmp_path_factory):
    """The doc/model.md §12.3 tiny checkpoint (anyres_max_9, spatial_unpad, newline)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("vision") / "anyres", "anyres")


def written_tensors(folder):
    """Every tensor of a checkpoint folder as written."""
    tensors = {}
    for shard in sorted(folder.glob("model-*.safetensors")):
        tensors.update(load_file(str(shard)))
    return tensors


def test_vision_weights_load_under_checkpoint_names(anyres_folder):
    """Tower (incl. unused post_layernorm), projector and newline take the written values."""
    loaded = load_stream_omni(str(anyres_folder), FP32)
    state, written = loaded.model.state_dict(), written_tensors(anyres_folder)
    for key in (TOWER_KEY, VISION_PREFIX + "vision_model.post_layernorm.weight",
                "model.mm_projector.2.weight", "model.image_newline"):
        torch.testing.assert_close(state[key], written[key], atol=0, rtol=0)
    assert loaded.report["weights.last_vision_layer_index"] == 1


def test_encode_image_token_counts(anyres_folder, tmp_path):
    """anyres_max_9 112x112: 16 base + 8x(8+1) stitched-map tokens; square/flat: 16 tokens."""
    rgb = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    anyres = load_stream_omni(str(anyres_folder), FP32).model
    tokens = anyres.encode_image(rgb)
    assert tokens.shape == (16 + 8 * 9, 64) and torch.isfinite(tokens).all()
    square = load_stream_omni(str(write_tiny_checkpoint(tmp_path / "sq", "square")), FP32)
    assert square.model.encode_image(rgb).shape == (16, 64)
    assert not hasattr(square.model.model, "image_newline")


def test_tower_from_separate_folder(anyres_folder, tmp_path):
    """Without tower keys the loader names vision_tower_path; with it the tower loads."""
    folder = shutil.copytree(anyres_folder, tmp_path / "notower")
    tensors = written_tensors(folder)
    for shard in folder.glob("model-*.safetensors"):
        shard.unlink()
    tower = {k[len(VISION_PREFIX):]: v for k, v in tensors.items() if k.startswith(VISION_PREFIX)}
    write_safetensors_shards({k: v for k, v in tensors.items()
                              if not k.startswith(VISION_PREFIX)}, folder)
    with pytest.raises(CheckpointError, match="vision_tower_path"):
        load_stream_omni(str(folder), FP32)
    (tmp_path / "siglip").mkdir()
    save_file(tower, str(tmp_path / "siglip" / "model.safetensors"))
    options = LoadOptions(dtype="fp32", vision_tower_path=str(tmp_path / "siglip"))
    state = load_stream_omni(str(folder), options).model.state_dict()
    torch.testing.assert_close(state[TOWER_KEY], tensors[TOWER_KEY], atol=0, rtol=0)


def test_encode_image_without_tower_is_an_input_error(tiny_loaded):
    """A checkpoint without vision refuses images clearly."""
    with pytest.raises(InputError, match="no vision tower"):
        tiny_loaded.model.encode_image(np.zeros((8, 8, 3), dtype=np.uint8))
