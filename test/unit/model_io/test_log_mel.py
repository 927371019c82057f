"""Whisper-style 128-bin log-mel (doc/model.md §5.1 step 4) against an independent numpy
computation."""
from __future__ import annotations

import numpy as np
import pytest
from transformers.audio_utils import mel_filter_bank

from stream_omni_ros.errors import InputError
from stream_omni_ros.model.speech_tokenizer import log_mel_128, slaney_mel_filterbank

RATE = 16000


def reference_filterbank() -> np.ndarray:
    """transformers' own Slaney filterbank, [128, 201]."""
    return mel_filter_bank(num_frequency_bins=201, num_mel_filters=128, min_frequency=0.0,
                           max_frequency=8000.0, sampling_rate=RATE, norm="slaney",
                           mel_scale="slaney").T


def reference_log_mel(wave: np.ndarray) -> np.ndarray:
    """Log-mel written out with numpy FFT in float64."""
    padded = np.pad(wave.astype(np.float64), 200, mode="reflect")
    frame_count = 1 + (padded.size - 400) // 160
    frames = np.stack([padded[i * 160:i * 160 + 400] for i in range(frame_count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = reference_filterbank() @ power[:-1].T
    log_mel = np.log10(np.maximum(mel, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return (log_mel + 4.0) / 4.0


def tone(seconds: float, *freqs: float) -> np.ndarray:
    """A sum of sines at 16 kHz, float32."""
    t = np.arange(int(seconds * RATE)) / RATE
    return sum(0.2 * np.sin(2 * np.pi * f * t) for f in freqs).astype(np.float32)


def test_filterbank_matches_an_independent_slaney_implementation():
    filters = slaney_mel_filterbank()
    assert filters.shape == (128, 201) and filters.dtype == np.float32
    np.testing.assert_allclose(filters, reference_filterbank(), rtol=1e-5, atol=1e-8)


def test_filterbank_has_slaney_properties():
    filters = slaney_mel_filterbank().astype(np.float64)
    bin_hz = RATE / 400
    wide = (filters > 0).sum(axis=1) >= 6  # enough bins for a Riemann sum of the triangle
    np.testing.assert_allclose(filters[wide].sum(axis=1) * bin_hz, 1.0, rtol=0.05)
    assert np.all(filters[:, -1] == 0) and np.all(filters[:, 0] == 0)  # 0 Hz and 8 kHz edges
    peaks_hz = filters.argmax(axis=1) * bin_hz
    assert np.all(np.diff(peaks_hz) >= 0) and peaks_hz[-1] > 7500


@pytest.mark.parametrize(("samples", "frames"), [(201, 1), (1600, 10), (16159, 100),
                                                 (16160, 101)])
def test_frame_count_is_samples_over_hop(samples, frames):
    assert log_mel_128(tone(samples / RATE, 300.0)).shape == (128, frames)


def test_log_mel_values_match_numpy_reference():
    wave = tone(0.3, 440.0, 2000.0)
    ours = log_mel_128(wave)
    assert ours.dtype == np.float32 and ours.shape == (128, 30)
    np.testing.assert_allclose(ours, reference_log_mel(wave), atol=2e-4)


def test_tone_energy_lands_in_the_mel_bin_of_its_frequency():
    filters = slaney_mel_filterbank()
    ours = log_mel_128(tone(0.5, 1000.0))
    expected_bin = filters[:, 1000 // 40].argmax()  # the filter weighting the 1 kHz bin most
    assert abs(int(ours[:, 25].argmax()) - int(expected_bin)) <= 1


@pytest.mark.parametrize("bad", [np.zeros(0, np.float32), np.zeros(100, np.float32),
                                 np.zeros((2, 1600), np.float32), np.zeros(1600, np.int16),
                                 np.array([0.0, np.nan] * 800), np.array([np.inf] * 1600)])
def test_bad_waveforms_raise_input_error(bad):
    with pytest.raises(InputError, match="waveform"):
        log_mel_128(bad)
