"""AudioChunk messages <-> PCM arrays (float32, frames x channels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time

from stream_omni_ros.errors import InputError
from stream_omni_ros.msg import AudioChunk

BYTES_PER_SAMPLE = {AudioChunk.ENCODING_S16LE: 2, AudioChunk.ENCODING_F32LE: 4}
MAX_SAMPLE_RATE = 384_000


@dataclass(frozen=True)
class Pcm:
    """Decoded audio: float32 samples [frames, channels] in [-1, 1] at `sample_rate` Hz."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration_s(self) -> float:
        """Duration of the samples in seconds."""
        return self.samples.shape[0] / self.sample_rate


def audio_msg_to_pcm(msg: AudioChunk) -> Pcm:
    """Decode an AudioChunk; raise InputError naming the bad field and what was expected."""
    if msg.encoding not in BYTES_PER_SAMPLE:
        raise InputError(f"AudioChunk.encoding {msg.encoding!r} is unknown: expected one of "
                         f"{sorted(BYTES_PER_SAMPLE)}")
    if not 0 < msg.sample_rate <= MAX_SAMPLE_RATE:
        raise InputError(f"AudioChunk.sample_rate {msg.sample_rate} is invalid: expected "
                         f"1..{MAX_SAMPLE_RATE} Hz")
    if msg.channels < 1:
        raise InputError(f"AudioChunk.channels {msg.channels} is invalid: expected >= 1")
    frame_bytes = BYTES_PER_SAMPLE[msg.encoding] * msg.channels
    data = bytes(msg.data)
    if len(data) % frame_bytes:
        raise InputError(f"AudioChunk.data has {len(data)} bytes, not a whole number of "
                         f"{frame_bytes}-byte frames ({msg.channels} x {msg.encoding})")
    if msg.encoding == AudioChunk.ENCODING_S16LE:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    else:
        samples = np.frombuffer(data, dtype="<f4").astype(np.float32)
    return Pcm(samples.reshape(-1, msg.channels), int(msg.sample_rate))


def pcm_to_audio_msg(samples: np.ndarray, sample_rate: int, *,
                     encoding: str = AudioChunk.ENCODING_S16LE, stamp: Time | None = None,
                     frame_id: str = "", turn_id: int = 0, seq: int = 0,
                     is_final: bool = False) -> AudioChunk:
    """Encode float PCM ([frames] or [frames, channels], [-1, 1]) as an AudioChunk."""
    if encoding not in BYTES_PER_SAMPLE:
        raise InputError(f"encoding {encoding!r} is unknown: expected one of "
                         f"{sorted(BYTES_PER_SAMPLE)}")
    pcm = np.asarray(samples, dtype=np.float32)
    if pcm.ndim == 1:
        pcm = pcm[:, None]
    if pcm.ndim != 2 or pcm.shape[1] < 1:
        raise InputError(f"PCM shape {samples.shape} is invalid: expected [frames] or "
                         "[frames, channels]")
    if encoding == AudioChunk.ENCODING_S16LE:
        payload = (np.clip(pcm, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2")
    else:
        payload = pcm.astype("<f4")
    msg = AudioChunk()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.sample_rate = int(sample_rate)
    msg.channels = int(pcm.shape[1])
    msg.encoding = encoding
    msg.data = payload.tobytes()
    msg.turn_id, msg.seq, msg.is_final = int(turn_id), int(seq), bool(is_final)
    return msg
