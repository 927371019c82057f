"""Microphone front end: PCM chunks of any rate and layout -> 16 kHz mono float32, timed."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from stream_omni_ros.dependencies import require_module
from stream_omni_ros.engine.config import AudioInputConfig
from stream_omni_ros.errors import InputError, InputReason
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

ENCODINGS = {"S16LE": np.dtype("<i2"), "F32LE": np.dtype("<f4")}


@dataclass(frozen=True)
class PcmChunk:
    """One chunk of interleaved PCM as it arrives from a microphone driver or a message."""

    data: bytes
    sample_rate: int
    channels: int = 1
    encoding: str = "S16LE"
    # Time of the first sample (seconds, caller's clock); None when the source has none.
    stamp: float | None = None
    # Monotonically increasing chunk counter of the source; None when the source has none.
    seq: int | None = None
    frame_id: str = ""  # the microphone's frame, carried to the events of the turn it feeds


@dataclass(frozen=True)
class ConvertedAudio:
    """A chunk converted to the model's 16 kHz mono float32 timeline."""

    samples: np.ndarray  # [N] float32 at 16 kHz, lost audio already replaced by zeros
    first_sample: int  # index of samples[0] on the 16 kHz timeline
    gap_s: float  # duration of audio lost just before this chunk
    clipped_fraction: float  # fraction of input samples at full scale


def pcm_to_float(chunk: PcmChunk, config: AudioInputConfig) -> np.ndarray:
    """Validate a chunk and return its samples as float32 [frames, channels] in [-1, 1]."""
    dtype = ENCODINGS.get(chunk.encoding)
    if dtype is None:
        raise InputError(f"audio chunk encoding {chunk.encoding!r} is not supported; "
                         f"expected one of {sorted(ENCODINGS)}", InputReason.ENCODING)
    if not config.min_sample_rate <= chunk.sample_rate <= config.max_sample_rate:
        raise InputError(f"audio chunk sample_rate {chunk.sample_rate} is out of range; expected "
                         f"{config.min_sample_rate}..{config.max_sample_rate} Hz",
                         InputReason.SAMPLE_RATE)
    if not 1 <= chunk.channels <= config.max_channels:
        raise InputError(f"audio chunk channels {chunk.channels} is out of range; expected "
                         f"1..{config.max_channels}", InputReason.CHANNELS)
    frame_bytes = dtype.itemsize * chunk.channels
    if len(chunk.data) == 0:
        raise InputError("audio chunk data is empty; expected at least one frame",
                         InputReason.EMPTY)
    if len(chunk.data) % frame_bytes:
        raise InputError(f"audio chunk data has {len(chunk.data)} bytes, not a whole number of "
                         f"{chunk.channels}-channel {chunk.encoding} frames ({frame_bytes} bytes)",
                         InputReason.SIZE)
    duration_s = len(chunk.data) / frame_bytes / chunk.sample_rate
    if duration_s > config.max_chunk_s:
        raise InputError(f"audio chunk holds {duration_s:.2f} s of audio; expected at most "
                         f"audio.max_chunk_s = {config.max_chunk_s} s per chunk",
                         InputReason.TOO_LONG)
    raw = np.frombuffer(chunk.data, dtype=dtype).reshape(-1, chunk.channels)
    if chunk.encoding == "S16LE":
        return raw.astype(np.float32) / 32768.0
    if not np.isfinite(raw).all():
        raise InputError("audio chunk data contains NaN or infinite F32LE samples; "
                         "expected finite floats in [-1, 1]", InputReason.NOT_FINITE)
    # out-of-range floats are clipped like a saturated ADC (and counted as clipping)
    return np.clip(raw, -1.0, 1.0).astype(np.float32, copy=False)


def clipped_fraction_of(frames: np.ndarray) -> float:
    """Fraction of samples at or beyond full scale (int16 extremes included)."""
    return float(np.count_nonzero(np.abs(frames) >= 32767 / 32768.0)) / frames.size


class AudioFrontEnd:
    """Streaming converter to 16 kHz mono that tracks the timeline, gaps and clipping.

    One soxr stream per source rate keeps chunk boundaries free of artefacts; a change of rate or
    channel count flushes the old stream. Not thread-safe: one caller (or a lock) at a time.
    """

    def __init__(self, config: AudioInputConfig | None = None) -> None:
        self.config = config or AudioInputConfig()
        self._soxr = require_module("soxr", "the audio front end resamples to 16 kHz with it")
        self.reset()

    def reset(self) -> None:
        """Forget the stream: timeline restarts at sample 0, no gap is reported next."""
        self._resampler = None  # a soxr.ResampleStream while the rate is not 16 kHz
        self._rate = 0
        self._samples_out = 0  # 16 kHz samples emitted so far (the timeline)
        self._input_s = 0.0  # seconds of source audio received since the anchor
        self._anchor_stamp: float | None = None
        self._last_seq: int | None = None
        self._last_chunk_s = 0.0

    @property
    def samples_out(self) -> int:
        """Number of 16 kHz samples emitted so far (the next sample's index)."""
        return self._samples_out

    def sample_to_stamp(self, index: int) -> float | None:
        """Caller-clock time of a 16 kHz timeline sample, if the source sent stamps."""
        if self._anchor_stamp is None:
            return None
        return self._anchor_stamp + index / MODEL_SAMPLE_RATE

    def stamp_to_sample(self, stamp: float) -> int | None:
        """16 kHz timeline index of a caller-clock time, if the source sent stamps."""
        if self._anchor_stamp is None:
            return None
        return int(round((stamp - self._anchor_stamp) * MODEL_SAMPLE_RATE))

    def convert(self, chunk: PcmChunk) -> ConvertedAudio:
        """Validate and convert one chunk; raises InputError and keeps state on bad input."""
        frames = pcm_to_float(chunk, self.config)
        clipped = clipped_fraction_of(frames)
        mono = frames.mean(axis=1) if chunk.channels > 1 else frames[:, 0]
        duration_s = len(mono) / chunk.sample_rate
        gap_s = self._gap_before(chunk, duration_s)
        fill = np.zeros(0, np.float32)
        if gap_s > 0:
            fill_len = int(round(min(gap_s, self.config.max_gap_fill_s) * MODEL_SAMPLE_RATE))
            fill = np.zeros(fill_len, np.float32)
            self._skip_unfilled(gap_s - fill_len / MODEL_SAMPLE_RATE)
        first_sample = self._samples_out
        samples = self._resample(np.ascontiguousarray(mono, np.float32), chunk.sample_rate)
        if fill.size:
            samples = np.concatenate([fill, samples])
        self._samples_out += len(samples)
        self._input_s += duration_s + fill.size / MODEL_SAMPLE_RATE
        self._last_chunk_s = duration_s
        return ConvertedAudio(samples, first_sample, gap_s, clipped)

    def flush(self) -> np.ndarray:
        """Return the resampler's remaining tail (call at the end of a stream)."""
        tail = self._drain()
        self._rate = 0
        self._samples_out += len(tail)
        return tail

    def _drain(self) -> np.ndarray:
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
        self._resampler = None
        return tail.astype(np.float32, copy=False)

    def _resample(self, mono: np.ndarray, rate: int) -> np.ndarray:
        tail = np.zeros(0, np.float32)
        if rate != self._rate:
            tail = self._drain()
            self._rate = rate
            if rate != MODEL_SAMPLE_RATE:
                self._resampler = self._soxr.ResampleStream(
                    rate, MODEL_SAMPLE_RATE, 1, dtype="float32",
                    quality=self.config.resample_quality)
        if self._resampler is None:
            out = mono.copy()
        else:
            out = self._resampler.resample_chunk(mono).astype(np.float32, copy=False)
        return np.concatenate([tail, out]) if tail.size else out

    def _gap_before(self, chunk: PcmChunk, duration_s: float) -> float:
        """Seconds of audio lost before this chunk, from seq numbers or else from stamps."""
        gap_s = 0.0
        if chunk.seq is not None and self._last_seq is not None:
            missing = chunk.seq - self._last_seq - 1
            if missing > 0:
                gap_s = missing * duration_s
            elif missing < 0:
                self._reanchor(chunk)  # the source restarted its counter
        elif chunk.stamp is not None and self._anchor_stamp is not None:
            expected = self._anchor_stamp + self._input_s
            late_s = chunk.stamp - expected
            if late_s > self.config.gap_tolerance_s:
                gap_s = late_s
            elif late_s < -max(self.config.gap_tolerance_s, self._last_chunk_s):
                self._reanchor(chunk)  # the clock jumped back (e.g. a simulation restart)
        if chunk.stamp is not None and self._anchor_stamp is None:
            self._anchor_stamp = chunk.stamp - self._samples_out / MODEL_SAMPLE_RATE
            self._input_s = self._samples_out / MODEL_SAMPLE_RATE
        if chunk.seq is not None:
            self._last_seq = chunk.seq
        return gap_s

    def _skip_unfilled(self, unfilled_s: float) -> None:
        """Keep stamps true after a gap longer than the silence inserted for it."""
        # later samples sit unfilled_s later on the caller's clock than their index says;
        # without this every following chunk would look late and add silence again
        if unfilled_s > 0 and self._anchor_stamp is not None:
            self._anchor_stamp += unfilled_s

    def _reanchor(self, chunk: PcmChunk) -> None:
        self._anchor_stamp = None
        self._last_seq = None


def chunks_to_utterance(chunks: Sequence[PcmChunk], config: AudioInputConfig) -> np.ndarray:
    """A complete utterance given as chunks -> 16 kHz mono float32, converted as audio/in is.

    Every chunk passes the checks of pcm_to_float (an InputError names its index and keeps the
    reason); stamps and sequence numbers are ignored: the chunks are one stream without gaps.
    """
    front_end = AudioFrontEnd(config)
    pieces = []
    for index, chunk in enumerate(chunks):
        try:
            pieces.append(front_end.convert(replace(chunk, stamp=None, seq=None)).samples)
        except InputError as error:
            raise InputError(f"audio[{index}]: {error}", error.reason) from error
    pieces.append(front_end.flush())
    samples = np.concatenate(pieces)
    if samples.size == 0:
        raise InputError("the utterance holds no audio chunks; expected at least one",
                         InputReason.EMPTY)
    return samples
