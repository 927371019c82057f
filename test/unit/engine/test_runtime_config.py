"""The `responder` setting: which Responder load_responder builds, and its value check."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.responder import AudioPiece, Done, TextPiece, TurnRequest
from stream_omni_ros.engine.runtime_config import (GenerationSettings, ModelConfig,
                                                   RuntimeConfig, load_responder)
from stream_omni_ros.errors import ConfigError


def test_unknown_responder_is_refused_naming_parameter_and_choices():
    with pytest.raises(ConfigError) as caught:
        RuntimeConfig(responder="gpt")
    message = str(caught.value)
    assert "responder" in message and "'gpt'" in message
    assert all(value in message for value in ("model", "echo", "passthrough"))


def test_model_responder_without_model_path_fails_clearly():
    with pytest.raises(ConfigError, match="model.path"):
        load_responder(RuntimeConfig())


def test_echo_needs_no_model_path():
    assert isinstance(load_responder(RuntimeConfig(responder="echo")), EchoResponder)


def test_passthrough_answers_with_the_configured_fixed_lengths():
    config = RuntimeConfig(responder="passthrough", generation=GenerationSettings(
        max_new_tokens=7, max_new_units=50, ignore_stop_ids=True))
    request = TurnRequest(audio=None, text="hi", image=None, history=(), system_prompt="",
                          speak=True)
    outputs = list(load_responder(config).begin_turn(request))
    texts = [o for o in outputs if isinstance(o, TextPiece)]
    audio = [o.pcm for o in outputs if isinstance(o, AudioPiece)]
    assert len(texts) == 7 and outputs[-1] == Done("max_new_tokens", 7)
    assert len(audio) >= 2  # streamed in chunks, as the vocoder would
    assert len(np.concatenate(audio)) == int(50 / 25 * 22050)  # 50 units = 2 s


def test_passthrough_rejects_a_zero_length():
    config = RuntimeConfig(responder="passthrough",
                           generation=GenerationSettings(max_new_units=0))
    with pytest.raises(ConfigError, match="max_new_units"):
        load_responder(config)


def test_quantization_with_compiled_decode_is_refused():
    with pytest.raises(ConfigError, match="quantization = '8bit' with model.compile_decode"):
        RuntimeConfig(device="cuda", quantization="8bit", model=ModelConfig(compile_decode=True))
    assert RuntimeConfig(quantization="8bit").model.compile_decode is False
