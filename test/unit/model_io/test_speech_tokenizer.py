"""Waveform -> units through a tiny ONNX tokenizer with the real signature (doc/model.md §5.1)."""
from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from stream_omni_ros.errors import CheckpointError, ConfigError, InputError
from stream_omni_ros.model.speech_tokenizer import (
    BLOCK_SAMPLES, SpeechTokenizer, log_mel_128, units_for_frames, units_for_samples)
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer

RATE = 16000


def speech_like(samples: int, seed: int = 0) -> np.ndarray:
    """A chirp plus a little noise, float32 at 16 kHz."""
    t = np.arange(samples) / RATE
    noise = np.random.default_rng(seed).standard_normal(samples) * 0.01
    return (0.3 * np.sin(2 * np.pi * (200 + 400 * t) * t) + noise).astype(np.float32)


def test_tiny_onnx_has_the_real_signature(tiny_tokenizer_path):
    session = onnxruntime.InferenceSession(str(tiny_tokenizer_path),
                                           providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [i.type for i in inputs] == ["tensor(float)", "tensor(int32)"]
    assert inputs[0].shape[:2] == [1, 128]
    mel = log_mel_128(speech_like(4000))
    units = session.run(None, {inputs[0].name: mel[None],
                               inputs[1].name: np.array([mel.shape[1]], np.int32)})[0]
    assert units.dtype == np.int64 and units.shape == (1, units_for_frames(25))


@pytest.mark.parametrize("samples", [1, 150, 201, 1600, 3280, 16000, 16161, 40000])
def test_unit_count_follows_the_two_stride_2_formula(tiny_tokenizer, samples):
    units = tiny_tokenizer.waveform_to_units(speech_like(samples))
    frames = max(samples, 201) // 160
    assert units.dtype == np.int64
    assert units.size == units_for_frames(frames) == units_for_samples(samples)
    assert units.min() >= 0 and units.max() < 32


def test_units_follow_the_audio_and_the_seed(tmp_path, tiny_tokenizer):
    wave = speech_like(32000)
    units = tiny_tokenizer.waveform_to_units(wave)
    assert len(set(units.tolist())) > 1  # not a constant stream
    again = SpeechTokenizer(write_tiny_speech_tokenizer(tmp_path / "same.onnx"))
    other = SpeechTokenizer(write_tiny_speech_tokenizer(tmp_path / "other.onnx", seed=1))
    np.testing.assert_array_equal(again.waveform_to_units(wave), units)
    assert not np.array_equal(other.waveform_to_units(wave), units)


def test_over_30_s_is_tokenised_in_consecutive_blocks(tiny_tokenizer):
    wave = speech_like(31 * RATE)
    units = tiny_tokenizer.waveform_to_units(wave)
    first = tiny_tokenizer.waveform_to_units(wave[:BLOCK_SAMPLES])
    rest = tiny_tokenizer.waveform_to_units(wave[BLOCK_SAMPLES:])
    assert units.size == 775 == first.size + rest.size
    np.testing.assert_array_equal(units, np.concatenate([first, rest]))


def test_a_tiny_final_block_is_padded_not_dropped(tiny_tokenizer):
    units = tiny_tokenizer.waveform_to_units(speech_like(BLOCK_SAMPLES + 100))
    assert units.size == 750 + 1


def test_float64_input_gives_the_same_units(tiny_tokenizer):
    wave = speech_like(8000)
    np.testing.assert_array_equal(tiny_tokenizer.waveform_to_units(wave.astype(np.float64)),
                                  tiny_tokenizer.waveform_to_units(wave))


def test_units_per_second_identifies_the_25_hz_tokenizer(tiny_tokenizer):
    assert tiny_tokenizer.units_per_second() == pytest.approx(25.0, rel=0.02)
    assert tiny_tokenizer.check_units_per_second() == pytest.approx(25.0, rel=0.02)
    with pytest.raises(CheckpointError, match="units/s"):
        tiny_tokenizer.check_units_per_second(expected=50.0)


def test_unavailable_provider_is_an_error_not_a_silent_fallback(tiny_tokenizer_path):
    assert SpeechTokenizer(tiny_tokenizer_path).providers == ("CPUExecutionProvider",)
    with pytest.raises(ConfigError, match="NoSuchExecutionProvider"):
        SpeechTokenizer(tiny_tokenizer_path, providers=["NoSuchExecutionProvider"])


def test_missing_onnx_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="speech_tokenizer_v1.onnx"):
        SpeechTokenizer(tmp_path / "speech_tokenizer_v1.onnx")


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.zeros((1600, 2), np.float32),
                                 np.full(1600, np.nan, np.float32), [0.0] * 1600])
def test_bad_waveforms_raise_input_error(tiny_tokenizer, bad):
    with pytest.raises(InputError, match="waveform"):
        tiny_tokenizer.waveform_to_units(bad)


def test_a_provider_that_does_not_load_is_logged_and_cpu_runs(tiny_tokenizer_path, caplog):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("the CUDA provider loads here")
    cuda = ("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": "HEURISTIC"})
    with caplog.at_level("WARNING", logger="stream_omni_ros.model.speech_tokenizer"):
        tokenizer = SpeechTokenizer(tiny_tokenizer_path, [cuda, "CPUExecutionProvider"])
    assert tokenizer.providers == ("CPUExecutionProvider",)
    assert "asked for CUDAExecutionProvider but runs on ['CPUExecutionProvider']" in caplog.text


def test_full_shape_is_the_real_v1_encoder_and_its_structure_runs(tmp_path):
    from dataclasses import replace

    import onnx

    from stream_omni_ros.model.tiny_speech_tokenizer import FULL_SHAPE, build_speech_tokenizer

    # CosyVoice speech_tokenizer_v1 (25 Hz): 1280 wide, 20 heads, 6 blocks, MLP x4, 4096 units.
    assert (FULL_SHAPE.width, FULL_SHAPE.heads, FULL_SHAPE.layers, FULL_SHAPE.mlp_ratio,
            FULL_SHAPE.codebook_size, FULL_SHAPE.positions) == (1280, 20, 6, 4, 4096, 1500)
    small = replace(FULL_SHAPE, width=80, heads=4, layers=2, codebook_size=64)
    path = tmp_path / "small_full.onnx"
    onnx.save(build_speech_tokenizer(small), str(path))
    tokenizer = SpeechTokenizer(path)
    units = tokenizer.waveform_to_units(speech_like(3 * RATE))
    assert units.size == units_for_samples(3 * RATE) and units.max() < 64
    assert len(set(units.tolist())) > 5  # the units follow the sound, not one entry for all
