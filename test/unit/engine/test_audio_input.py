"""The microphone front end: formats, rates, layouts, timeline, gaps, clipping, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import AudioFrontEnd, PcmChunk, chunks_to_utterance
from stream_omni_ros.engine.config import AudioInputConfig
from stream_omni_ros.errors import InputError, InputReason


def tone(rate: int, seconds: float, hz: float, amplitude: float = 0.5) -> np.ndarray:
    """A sine tone at the given sample rate."""
    return (amplitude * np.sin(2 * np.pi * hz * np.arange(int(rate * seconds)) / rate)).astype(
        np.float32)


def encode(samples: np.ndarray, encoding: str, channels: int) -> bytes:
    """Interleave the same signal on every channel and encode it."""
    frames = np.repeat(samples[:, None], channels, axis=1)
    if encoding == "S16LE":
        return (np.clip(frames, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
    return frames.astype("<f4").tobytes()


def dominant_hz(samples: np.ndarray, rate: int = 16000) -> float:
    """Frequency of the largest FFT bin."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def stream(front_end: AudioFrontEnd, data: bytes, rate: int, channels: int, encoding: str,
           chunk_frames: int) -> np.ndarray:
    """Feed data in chunks like a driver would and return all 16 kHz output."""
    frame_bytes = (2 if encoding == "S16LE" else 4) * channels
    step = chunk_frames * frame_bytes
    out = [front_end.convert(PcmChunk(data[i:i + step], rate, channels, encoding, seq=n)).samples
           for n, i in enumerate(range(0, len(data), step))]
    return np.concatenate(out + [front_end.flush()])


@pytest.mark.parametrize("rate,channels,encoding", [
    (8000, 1, "S16LE"), (44100, 1, "F32LE"), (48000, 2, "S16LE"), (48000, 2, "F32LE"),
    (16000, 1, "S16LE"), (22050, 6, "F32LE")])
def test_converts_to_16k_mono_keeping_duration_and_pitch(rate, channels, encoding):
    front_end = AudioFrontEnd()
    signal = tone(rate, 1.5, 1000.0)
    out = stream(front_end, encode(signal, encoding, channels), rate, channels, encoding,
                 chunk_frames=rate // 50 + 7)
    assert out.dtype == np.float32
    assert abs(len(out) - 24000) <= 2
    assert abs(dominant_hz(out[1000:-1000]) - 1000.0) < 5
    assert abs(np.sqrt(np.mean(out[1000:-1000] ** 2)) - 0.5 / np.sqrt(2)) < 0.01


def test_chunk_boundaries_add_no_artefacts():
    signal = tone(44100, 1.0, 440.0)
    whole = stream(AudioFrontEnd(), encode(signal, "F32LE", 1), 44100, 1, "F32LE", 44100)
    chunked = stream(AudioFrontEnd(), encode(signal, "F32LE", 1), 44100, 1, "F32LE", 441)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)


def test_gap_from_sequence_numbers_is_reported_and_filled():
    front_end = AudioFrontEnd()
    data = encode(tone(16000, 0.02, 300), "S16LE", 1)
    first = front_end.convert(PcmChunk(data, 16000, seq=1))
    after_gap = front_end.convert(PcmChunk(data, 16000, seq=5))
    assert first.gap_s == 0
    assert after_gap.gap_s == pytest.approx(0.06)
    # lost audio becomes silence so later times stay on the source's clock
    assert after_gap.first_sample == 320
    assert len(after_gap.samples) == 320 + 960
    assert front_end.samples_out == 4 * 320 + 320


def test_gap_from_stamps_is_reported_and_jitter_is_not():
    front_end = AudioFrontEnd()
    data = encode(tone(48000, 0.1, 300), "S16LE", 1)
    gaps = [front_end.convert(PcmChunk(data, 48000, stamp=stamp)).gap_s
            for stamp in (100.0, 100.105, 100.2, 100.55)]
    assert gaps[:3] == [0.0, 0.0, 0.0]
    assert gaps[3] == pytest.approx(0.25, abs=1e-6)
    assert front_end.sample_to_stamp(0) == pytest.approx(100.0)


def test_a_pause_longer_than_the_fill_keeps_stamps_true_and_is_reported_once():
    front_end = AudioFrontEnd()
    data = encode(tone(16000, 0.04, 300), "S16LE", 1)
    front_end.convert(PcmChunk(data, 16000, stamp=100.0))
    resumed = front_end.convert(PcmChunk(data, 16000, stamp=160.04))  # a minute later
    after = front_end.convert(PcmChunk(data, 16000, stamp=160.08))
    assert resumed.gap_s == pytest.approx(60.0) and after.gap_s == 0
    assert len(resumed.samples) == 16000 + 640  # only max_gap_fill_s of silence is inserted
    assert front_end.sample_to_stamp(after.first_sample) == pytest.approx(160.08)
    assert front_end.stamp_to_sample(160.08) == after.first_sample


def test_clipping_fraction_is_measured():
    front_end = AudioFrontEnd()
    loud = np.clip(tone(16000, 0.1, 100, amplitude=2.0), -1.0, 1.0)
    clipped = front_end.convert(PcmChunk(encode(loud, "S16LE", 1), 16000)).clipped_fraction
    quiet = front_end.convert(PcmChunk(encode(loud * 0.5, "S16LE", 1), 16000)).clipped_fraction
    assert 0.5 < clipped < 0.8
    assert quiet == 0.0


@pytest.mark.parametrize("chunk,field,reason", [
    (PcmChunk(np.array([np.nan, 0], "<f4").tobytes(), 16000, 1, "F32LE"), "NaN", "not_finite"),
    (PcmChunk(np.array([np.inf, 0], "<f4").tobytes(), 16000, 1, "F32LE"), "NaN or infinite",
     "not_finite"),
    (PcmChunk(b"\0\0", 16000, 1, "MP3"), "encoding 'MP3'", "encoding"),
    (PcmChunk(b"\0\0", 0, 1, "S16LE"), "sample_rate 0", "sample_rate"),
    (PcmChunk(b"\0\0", 3999, 1, "S16LE"), "sample_rate 3999", "sample_rate"),
    (PcmChunk(b"\0\0", 10_000_000, 1, "S16LE"), "sample_rate 10000000", "sample_rate"),
    (PcmChunk(b"\0\0", 16000, 0, "S16LE"), "channels 0", "channels"),
    (PcmChunk(b"\0" * 66, 16000, 33, "S16LE"), "channels 33", "channels"),
    (PcmChunk(b"", 16000, 1, "S16LE"), "empty", "empty"),
    (PcmChunk(b"\0\0\0", 16000, 1, "S16LE"), "3 bytes", "size"),
    (PcmChunk(b"\0" * 6, 16000, 2, "S16LE"), "6 bytes", "size"),
    (PcmChunk(b"\0" * 64002, 16000, 1, "S16LE"), "2.00 s", "too_long"),
])
def test_bad_chunks_raise_input_error_with_a_reason_and_stream_continues(chunk, field, reason):
    front_end = AudioFrontEnd()
    good = encode(tone(16000, 0.01, 300), "S16LE", 1)
    front_end.convert(PcmChunk(good, 16000))
    with pytest.raises(InputError, match=field) as raised:
        front_end.convert(chunk)
    assert raised.value.reason == reason
    after = front_end.convert(PcmChunk(good, 16000))
    assert after.first_sample == 160 and len(after.samples) == 160


def test_an_utterance_in_chunks_of_any_rate_and_layout_becomes_one_16k_stream():
    stereo = encode(tone(44100, 0.5, 300), "F32LE", 2)
    mono_8k = encode(tone(8000, 0.25, 300), "S16LE", 1)
    chunks = [PcmChunk(stereo[i:i + 3528], 44100, 2, "F32LE", stamp=50.0, seq=7)
              for i in range(0, len(stereo), 3528)] + [PcmChunk(mono_8k, 8000, seq=3)]
    samples = chunks_to_utterance(chunks, AudioInputConfig())
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) - 0.75 * 16000) <= 32  # stamps and seq numbers add no gap
    assert abs(dominant_hz(samples[:8000]) - 300) < 10


@pytest.mark.parametrize("chunk,reason", [
    (PcmChunk(b"\0\0" * 160, 2000), InputReason.SAMPLE_RATE),
    (PcmChunk(b"\0\0" * 64 * 10, 16000, 64), InputReason.CHANNELS),
    (PcmChunk(b"\0\0" * 16000 * 3, 16000), InputReason.TOO_LONG),
])
def test_an_utterance_chunk_is_refused_by_the_checks_of_audio_in(chunk, reason):
    good = PcmChunk(encode(tone(16000, 0.01, 300), "S16LE", 1), 16000)
    with pytest.raises(InputError, match=r"audio\[1\]") as raised:
        chunks_to_utterance([good, chunk], AudioInputConfig())
    assert raised.value.reason == reason
    with pytest.raises(InputError) as live:
        AudioFrontEnd().convert(chunk)
    assert live.value.reason == reason  # the microphone stream refuses it the same way
