"""Pure conversions between the ROS audio/HRI standard messages' fields and our audio topics.

No ROS imports: `audio_common_bridge` moves the fields in and out of the messages. The standard
formats are those of ros-drivers audio_common (AudioInfo: channels, sample_rate, sample_format,
bitrate, coding_format) and REP-155's hri_msgs/LiveSpeech (incremental, final, confidence).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_omni_ros.errors import ConfigError, InputError, InputReason

WAVE = "wave"
BYTES_PER_SAMPLE = {"S16LE": 2, "F32LE": 4}
MAX_CHANNELS = 32
MAX_SAMPLE_RATE = 384_000
# audio_common's capture node encodes mp3 unless told otherwise; raw PCM is its "wave" format.
MP3_HINT = ("set the capture node's `format:=wave` (e.g. `ros2 launch audio_capture "
            "capture_wave.launch.py`)")


@dataclass(frozen=True)
class WaveFormat:
    """Interleaved PCM as described by an audio_common AudioInfo with coding_format "wave"."""

    sample_rate: int
    channels: int
    sample_format: str  # "S16LE" or "F32LE", also the AudioChunk encoding of the same name

    @property
    def frame_bytes(self) -> int:
        """Bytes of one frame (one sample of every channel)."""
        return BYTES_PER_SAMPLE[self.sample_format] * self.channels

    @property
    def bitrate(self) -> int:
        """Bits of audio per second, as AudioInfo.bitrate documents it."""
        return self.sample_rate * self.frame_bytes * 8


def audio_info_to_wave_format(coding_format: str, sample_format: str, channels: int,
                              sample_rate: int) -> WaveFormat:
    """Check an AudioInfo's fields; raise InputError (with a reason) for what we cannot decode."""
    if coding_format.strip().lower() != WAVE:
        raise InputError(f"AudioInfo.coding_format {coding_format!r} is not supported: expected "
                         f"{WAVE!r} (raw PCM); {MP3_HINT}", reason=InputReason.CODING)
    if sample_format not in BYTES_PER_SAMPLE:
        raise InputError(f"AudioInfo.sample_format {sample_format!r} is not supported: expected "
                         f"one of {sorted(BYTES_PER_SAMPLE)} (the capture node's "
                         "`sample_format` parameter)", reason=InputReason.ENCODING)
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(f"AudioInfo.channels {channels} is invalid: expected 1..{MAX_CHANNELS}",
                         reason=InputReason.CHANNELS)
    if not 1 <= sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"AudioInfo.sample_rate {sample_rate} is invalid: expected "
                         f"1..{MAX_SAMPLE_RATE} Hz", reason=InputReason.SAMPLE_RATE)
    return WaveFormat(int(sample_rate), int(channels), sample_format)


def wave_bytes_to_frames(data: bytes, wave: WaveFormat, max_bytes: int) -> int:
    """Number of whole frames in an AudioData payload; InputError if empty, torn or too big."""
    if not data:
        raise InputError("AudioData.data is empty: expected at least one frame",
                         reason=InputReason.EMPTY)
    if len(data) > max_bytes:
        raise InputError(f"AudioData.data has {len(data)} bytes: expected at most {max_bytes}",
                         reason=InputReason.TOO_LARGE)
    if len(data) % wave.frame_bytes:
        raise InputError(f"AudioData.data has {len(data)} bytes, not a whole number of "
                         f"{wave.frame_bytes}-byte frames ({wave.channels} x "
                         f"{wave.sample_format})", reason=InputReason.SIZE)
    return len(data) // wave.frame_bytes


def float_to_wave_bytes(samples: np.ndarray, sample_format: str) -> bytes:
    """Float PCM in [-1, 1] (any shape, interleaved order) as S16LE or F32LE bytes."""
    if sample_format not in BYTES_PER_SAMPLE:
        raise InputError(f"sample format {sample_format!r} is unknown: expected one of "
                         f"{sorted(BYTES_PER_SAMPLE)}", reason=InputReason.ENCODING)
    pcm = np.asarray(samples, dtype=np.float32)
    if sample_format == "S16LE":
        return (np.clip(pcm, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()
    return pcm.astype("<f4").tobytes()


def wave_bytes_to_float(data: bytes, wave: WaveFormat) -> np.ndarray:
    """S16LE / F32LE bytes as float32 [frames, channels] in [-1, 1] (the inverse of the above)."""
    if wave.sample_format == "S16LE":
        flat = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        flat = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return flat.reshape(-1, wave.channels)


class MonoResampler:
    """Float audio of any rate and channel count -> mono at one rate, seamless across chunks.

    One soxr stream per source rate (audio_play is configured for one fixed format); `flush`
    ends a stream at the end of a turn so the next turn starts clean.
    """

    def __init__(self, target_rate: int) -> None:
        import soxr  # a runtime dependency of the package (the engine front end uses it too)
        self._soxr = soxr
        self.target_rate = int(target_rate)
        self._source_rate = 0
        self._stream = None

    def convert(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Samples [frames, channels] at `sample_rate` -> mono float32 at the target rate."""
        pcm = np.asarray(samples, np.float32)
        mono = pcm.mean(axis=1) if pcm.ndim == 2 else pcm
        head = np.zeros(0, np.float32)
        if sample_rate != self._source_rate:
            head = self.flush()
            self._source_rate = int(sample_rate)
        if self._source_rate == self.target_rate:
            return np.concatenate([head, mono])
        if self._stream is None:
            self._stream = self._soxr.ResampleStream(self._source_rate, self.target_rate, 1,
                                                     dtype="float32")
        return np.concatenate([head, self._stream.resample_chunk(mono)])

    def flush(self) -> np.ndarray:
        """The resampler's remaining output; the next chunk starts a new stream."""
        tail = np.zeros(0, np.float32)
        if self._stream is not None:
            tail = self._stream.resample_chunk(np.zeros(0, np.float32), last=True)
        self._stream, self._source_rate = None, 0
        return np.asarray(tail, np.float32).reshape(-1)


def transcript_to_live_speech(text: str, is_final: bool) -> tuple[str, str]:
    """Our transcript text -> LiveSpeech (incremental, final): one of the two is set."""
    return ("", text) if is_final else (text, "")


def voice_id_to_speech_topic(voice_id: str) -> str:
    """REP-155 topic of a voice's recognised speech; ConfigError for an unusable id."""
    if not voice_id or not all(c.isalnum() or c == "_" for c in voice_id) \
            or voice_id[0].isdigit():
        raise ConfigError(f"voice id {voice_id!r} is invalid: expected letters, digits and "
                          "underscores, not starting with a digit")
    return f"/humans/voices/{voice_id}/speech"
