"""Tiny vision settings and a tiny speech tokenizer shared by the model-io tests."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.model.vision import VisionSettings

TINY_VISION_CONFIG = {
    "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
    "num_attention_heads": 2, "image_size": 56, "patch_size": 14, "num_channels": 3,
    "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6,
}
TINY_PINPOINTS = [[56, 56], [56, 112], [112, 56], [112, 112], [168, 56], [56, 168]]


def tiny_raw_config(**overrides: Any) -> dict[str, Any]:
    """The vision part of the tiny config.json of doc/model.md §12.3, with field overrides."""
    raw = {
        "hidden_size": 64,
        "mm_vision_tower": "google/siglip-so400m-patch14-384",
        "vision_config": dict(TINY_VISION_CONFIG),
        "mm_hidden_size": 32,
        "mm_projector_type": "mlp2x_gelu",
        "mm_patch_merge_type": "spatial_unpad",
        "image_aspect_ratio": "anyres_max_9",
        "image_grid_pinpoints": TINY_PINPOINTS,
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def tiny_raw() -> Callable[..., dict[str, Any]]:
    """Factory: the tiny config.json's vision fields with overrides."""
    return tiny_raw_config


@pytest.fixture
def tiny_settings() -> Callable[..., VisionSettings]:
    """Factory: VisionSettings of the tiny config with config.json overrides."""
    return lambda **overrides: VisionSettings.from_config(tiny_raw_config(**overrides))


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 25 Hz speech tokenizer written once per session."""
    return write_tiny_speech_tokenizer(tmp_path_factory.mktemp("speech") / "cosyvoice")


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path: Path) -> SpeechTokenizer:
    """The tiny speech tokenizer on onnxruntime's CPU provider."""
    return SpeechTokenizer(tiny_tokenizer_path, providers=["CPUExecutionProvider"])
