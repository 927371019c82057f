"""The vision path inside a tiny checkpoint written to disk and loaded by the real loader."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, load_stream_omni
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.vision import count_image_tokens


@pytest.fixture(scope="module")
def anyres_loaded(tmp_path_factory: pytest.TempPathFactory) -> LoadedStreamOmni:
    """The tiny anyres checkpoint (doc/model.md §12.3) loaded in fp32."""
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("vision") / "anyres", "anyres")
    return load_stream_omni(str(folder), LoadOptions(dtype="fp32"))


def stored_tensor(folder: Path, key: str) -> torch.Tensor:
    """One tensor read straight from the checkpoint's shards."""
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as handle:
            if key in handle.keys():
                return handle.get_tensor(key)
    raise KeyError(key)


def test_tower_weights_come_from_the_checkpoint(anyres_loaded):
    key = "model.vision_tower.vision_tower.vision_model.encoder.layers.1.mlp.fc2.weight"
    loaded = anyres_loaded.model.state_dict()[key]
    assert torch.equal(loaded, stored_tensor(anyres_loaded.folder, key))


@pytest.mark.parametrize("size", [(640, 480), (112, 112), (40, 170)])
def test_encoded_image_has_the_counted_tokens(anyres_loaded, size):
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    tokens = anyres_loaded.model.encode_image(rgb)
    settings = anyres_loaded.model.model.vision_settings
    assert tokens.shape == (count_image_tokens(size, settings), 64)
    assert torch.isfinite(tokens).all()


def test_rows_end_with_the_checkpoint_image_newline(anyres_loaded):
    rgb = np.full((480, 640, 3), 90, dtype=np.uint8)  # 6 kept rows of 8 tokens + newline
    tokens = anyres_loaded.model.encode_image(rgb)
    newline = anyres_loaded.model.model.image_newline
    for row in range(6):
        assert torch.equal(tokens[16 + row * 9 + 8], newline)
