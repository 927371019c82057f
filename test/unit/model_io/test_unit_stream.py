"""Incremental tokenization of a growing utterance: exact while short, bounded cost, and a
function of the audio alone."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer, units_for_samples
from stream_omni_ros.model.unit_stream import (SAMPLES_PER_UNIT, UnitStream, UnitWindowConfig,
                                               agreement)

RATE = 16000
CONFIG = UnitWindowConfig(hop_s=2.0, left_context_s=0.6, right_context_s=0.8)


class RecordingTokenizer(SpeechTokenizer):
    """The real tokenizer, remembering how many samples each call tokenized."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.calls: list[int] = []

    def waveform_to_units(self, wave_16k: np.ndarray) -> np.ndarray:
        """Tokenize and record the call's length."""
        self.calls.append(len(wave_16k))
        return super().waveform_to_units(wave_16k)


@pytest.fixture
def recording(tiny_tokenizer_path) -> RecordingTokenizer:
    """A fresh recording tokenizer."""
    return RecordingTokenizer(tiny_tokenizer_path)


def babble(seconds: float, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated chirps plus noise, float32 at 16 kHz."""
    t = np.arange(int(seconds * RATE)) / RATE
    rng = np.random.default_rng(seed)
    pitch = 120 + 80 * np.sin(2 * np.pi * 0.7 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (np.sin(2 * np.pi * 4 * t) > 0)
    return (0.3 * voiced + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def prefixes(wave: np.ndarray, every_s: float) -> list[np.ndarray]:
    """The utterance as a listener hands it over: growing prefixes, then the whole of it."""
    step = int(every_s * RATE)
    return [wave[:end] for end in range(step, wave.size, step)] + [wave]


def test_shorter_than_hop_plus_right_context_equals_whole_tokenization(tiny_tokenizer):
    stream = UnitStream(tiny_tokenizer, CONFIG)
    for prefix in prefixes(babble(2.7), 0.5):  # 2.7 s < hop 2.0 s + right context 0.8 s
        np.testing.assert_array_equal(stream.units(prefix),
                                      tiny_tokenizer.waveform_to_units(prefix))
    assert stream.kept_units == 0


def test_units_depend_on_the_audio_alone_not_on_when_partials_ran(tiny_tokenizer):
    wave = babble(11.3)
    often, never = UnitStream(tiny_tokenizer, CONFIG), UnitStream(tiny_tokenizer, CONFIG)
    for prefix in prefixes(wave, 0.5):
        partial = often.units(prefix)
        assert partial.size == units_for_samples(prefix.size)
    np.testing.assert_array_equal(partial, never.units(wave))


def test_a_kept_window_holds_its_own_tokenization_without_the_contexts(tiny_tokenizer):
    wave = babble(9.0)
    units = UnitStream(tiny_tokenizer, CONFIG).units(wave)
    hop, left, right = 50, 15, 20  # CONFIG in 40 ms units
    for k in range(3):  # windows whose right context lies inside the 9 s
        start = max(0, k * hop - left)
        window = wave[start * SAMPLES_PER_UNIT:(k * hop + hop + right) * SAMPLES_PER_UNIT]
        expected = tiny_tokenizer.waveform_to_units(window)[k * hop - start:][:hop]
        np.testing.assert_array_equal(units[k * hop:(k + 1) * hop], expected)


def test_every_call_tokenizes_a_bounded_stretch_and_each_window_once(recording):
    stream, wave = UnitStream(recording, CONFIG), babble(15.0)
    for prefix in prefixes(wave, 0.5):
        stream.units(prefix)
    assert max(recording.calls) <= CONFIG.window_samples
    windows = [n for n in recording.calls if n == CONFIG.window_samples]
    assert len(windows) == stream.kept_units // 50 - 1  # the first window has no left context
    recording.calls.clear()
    stream.units(np.concatenate([wave, babble(0.3, seed=1)]))  # the endpoint, 0.3 s later
    assert sum(recording.calls) <= 2 * CONFIG.window_samples  # not the 15 s again


def test_audio_that_does_not_continue_the_utterance_starts_a_new_one(tiny_tokenizer):
    stream = UnitStream(tiny_tokenizer, CONFIG)
    stream.units(babble(8.0))
    other = babble(2.5, seed=2)  # shorter than hop + right context
    assert stream.kept_units > 0
    units = stream.units(other)
    assert stream.kept_units == 0
    np.testing.assert_array_equal(units, tiny_tokenizer.waveform_to_units(other))


def test_hop_zero_tokenizes_the_whole_utterance_every_time(recording):
    stream, wave = UnitStream(recording, UnitWindowConfig(hop_s=0)), babble(7.0)
    for prefix in prefixes(wave, 1.0):
        np.testing.assert_array_equal(stream.units(prefix), recording.waveform_to_units(prefix))
    assert max(recording.calls) == wave.size


@pytest.mark.parametrize("fields", [{"hop_s": 0.01}, {"left_context_s": -1.0},
                                    {"right_context_s": 0.0}, {"hop_s": 29.0}])
def test_bad_window_settings_are_config_errors(fields):
    with pytest.raises(ConfigError, match="UnitWindowConfig"):
        UnitWindowConfig(**fields)


def test_agreement_counts_matching_positions_over_the_longer_sequence():
    assert agreement(np.array([1, 2, 3, 4]), np.array([1, 2, 0, 4])) == 0.75
    assert agreement(np.array([1, 2]), np.array([1, 2, 3, 4])) == 0.5
    assert agreement(np.array([], np.int64), np.array([], np.int64)) == 1.0
