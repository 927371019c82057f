"""Acoustic echo cancellation: the played audio, aligned by stamps, removed from the microphone.

The player reports each chunk it handed to the speaker with the time its first sample reaches the
device (audio/played). Those stamps place the reference on the microphone's 16 kHz timeline; the
WebRTC audio processing module (AEC3, from the `livekit` wheel) then removes the loudspeaker's
echo from each 10 ms microphone frame, estimating the acoustic delay and room response itself.
Double talk is its job too: the user's voice passes while the robot speaks, so barge-in works.

Microphone audio is processed in whole 10 ms frames; up to 159 samples wait for the next chunk.
They keep their timeline indices, so stamps stay true. A busy robot may deliver audio/played after
the microphone audio it covers: while playback is expected (the engine's answer is playing, or
the player's last report did not end its run) frames past the reference wait for it, until
echo.reference_wait_s of microphone audio waits, and are then processed in order (EchoStats counts
the expired waits).
Without a live reference (no player, a third-party player, a microphone without stamps, the
library missing) the audio passes as is and `live` is false: the listener then applies
echo.without_reference.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from stream_omni_ros.dependencies import MissingModuleError, require_module
from stream_omni_ros.engine.audio_input import MODEL_SAMPLE_RATE, AudioFrontEnd, PcmChunk
from stream_omni_ros.engine.audio_input import pcm_to_float
from stream_omni_ros.engine.config import AudioInputConfig, EchoConfig

FRAME = MODEL_SAMPLE_RATE // 100  # the processing module works on 10 ms frames
SILENT_REFERENCE = 1e-8  # mean square below which a far-end frame counts as silence
CONTINUOUS_S = 0.002  # a played chunk this close to the previous one's end continues it
RECENT_FRAMES = 1000  # the diagnostics' ERLE covers the last 10 s of frames the robot spoke


class WebRtcCanceller:
    """The WebRTC audio processing module on 16 kHz mono int16 frames of 10 ms."""

    def __init__(self, noise_suppression: bool) -> None:
        rtc = require_module("livekit.rtc", "echo cancellation uses its WebRTC audio processing")
        self._rtc = rtc
        self._apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True,
                                              noise_suppression=noise_suppression)

    def process(self, far: np.ndarray, near: np.ndarray) -> np.ndarray:
        """Cancel the echo of far (what played) in near (the microphone); float32 in and out."""
        reverse = self._rtc.AudioFrame(float_to_pcm16(far), MODEL_SAMPLE_RATE, 1, FRAME)
        self._apm.process_reverse_stream(reverse)
        stream = self._rtc.AudioFrame(float_to_pcm16(near), MODEL_SAMPLE_RATE, 1, FRAME)
        self._apm.process_stream(stream)
        return np.frombuffer(bytes(stream.data), np.int16).astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> S16LE bytes (clipped like a converter would)."""
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()


class ReferenceBuffer:
    """Played audio at 16 kHz on the microphone timeline, bounded to the last `capacity` samples.

    Samples nobody played read as zeros (silence), so gaps between answers need no messages.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data = np.zeros(capacity, np.float32)
        self._start = 0  # timeline index of _data[0]

    def write(self, samples: np.ndarray, first: int) -> None:
        """Store samples whose first one sits at timeline index `first`."""
        end = first + len(samples)
        if end > self._start + self.capacity:  # newer audio: slide the window forward
            shift = end - self.capacity - self._start
            self._data = np.roll(self._data, -shift)
            self._data[max(0, self.capacity - shift):] = 0.0
            self._start += shift
        lo = max(first, self._start)
        if lo < end:
            self._data[lo - self._start:end - self._start] = samples[lo - first:]

    def read(self, first: int, count: int) -> np.ndarray:
        """Samples [first, first + count) of the timeline; zeros outside the window."""
        out = np.zeros(count, np.float32)
        lo, hi = max(first, self._start), min(first + count, self._start + self.capacity)
        if lo < hi:
            out[lo - first:hi - first] = self._data[lo - self._start:hi - self._start]
        return out


@dataclass
class EchoStats:
    """Energy of the microphone before and after cancellation, over frames the robot spoke."""

    frames: int = 0
    mic_energy: float = 0.0
    out_energy: float = 0.0
    waits_expired: int = 0  # held microphone audio went on without its reference

    def erle_db(self) -> float | None:
        """Echo return loss enhancement [dB]; None before any frame with a reference."""
        if self.frames == 0:
            return None
        return erle_of(self.mic_energy, self.out_energy)


@dataclass(frozen=True)
class EchoReport:
    """The canceller's state for diagnostics: is it cancelling, and how well lately."""

    live: bool  # a playback reference is live and the library runs
    frames: int  # 10 ms frames cancelled while the robot spoke, since the start
    recent_erle_db: float | None  # over the last RECENT_FRAMES of those; None before any
    unavailable: str  # why the library cannot run ("" when it can or was not needed yet)


def erle_of(mic_energy: float, out_energy: float) -> float:
    """Echo return loss enhancement [dB] from the energy before and after cancellation."""
    return float(10.0 * np.log10(max(mic_energy, 1e-20) / max(out_energy, 1e-20)))


class EchoCanceller:
    """Aligns played audio to the microphone by stamps and cancels it (not thread-safe)."""

    def __init__(self, config: EchoConfig, audio_config: AudioInputConfig | None = None) -> None:
        self.config = config
        self.audio_config = audio_config or AudioInputConfig()
        self.reference = ReferenceBuffer(int(config.max_reference_s * MODEL_SAMPLE_RATE))
        self.stats = EchoStats()
        self.frames = 0  # frames cancelled while the robot spoke (stats may be reset, not this)
        self._recent: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=RECENT_FRAMES)  # (mic, out) energy of the latest of those frames
        self.unavailable: str | None = None  # why the library cannot run, once known
        self._canceller: WebRtcCanceller | None = None
        self._last_played: float | None = None  # caller-clock arrival of the last played chunk
        self._resampler = None
        self._played_end: tuple[int, float] | None = None  # (rate, stamp where the last ended)
        self._run_open = False  # the last played chunk did not end its run: more will come
        self._gave_up = False  # a wait expired and the reference has not caught up since
        self._next_ref = 0  # timeline index where the resampler's next output lands
        self._pending = np.zeros(0, np.float32)
        self._pending_first = 0

    def add_played(self, chunk: PcmChunk, now: float, front_end: AudioFrontEnd,
                   last: bool = False) -> bool:
        """Store a played chunk (stamp: when its first sample reached the speaker).

        `last`: the player's queue ran dry with it (the end of its run). Returns False when it
        cannot be placed: no stamp, or a microphone without stamps.
        Raises InputError on a malformed chunk.
        """
        frames = pcm_to_float(chunk, self.audio_config)
        if chunk.stamp is None:
            return False
        first = front_end.stamp_to_sample(chunk.stamp)
        if first is None:
            return False
        self._last_played, self._run_open = now, not last
        mono = frames.mean(axis=1) if frames.shape[1] > 1 else frames[:, 0]
        samples = self._to_16k(mono, chunk, first)
        self.reference.write(samples, self._next_ref)
        self._next_ref += len(samples)
        if last:  # the run ended: what the resampler holds back goes in place now
            self._drain_resampler()
            self._played_end = None
        return True

    def _to_16k(self, mono: np.ndarray, chunk: PcmChunk, first: int) -> np.ndarray:
        """Resample a played chunk; one stream per continuous run keeps its edges clean."""
        rate = chunk.sample_rate
        continues = (self._played_end is not None and self._played_end[0] == rate
                     and abs(self._played_end[1] - chunk.stamp) <= CONTINUOUS_S)
        if not continues:
            self._drain_resampler()
            soxr = require_module("soxr", "the played audio is resampled to 16 kHz with it")
            # LQ holds back about one 20 ms chunk (HQ two): the reference must arrive before
            # the microphone audio it cancels
            self._resampler = None if rate == MODEL_SAMPLE_RATE else soxr.ResampleStream(
                rate, MODEL_SAMPLE_RATE, 1, dtype="float32", quality="LQ")
            self._next_ref = first
        self._played_end = (rate, chunk.stamp + len(mono) / rate)
        mono = np.ascontiguousarray(mono, np.float32)
        return mono if self._resampler is None else self._resampler.resample_chunk(mono)

    def _drain_resampler(self) -> None:
        """The end of a played run: its last samples, held in the resampler, go in place."""
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            self.reference.write(tail, self._next_ref)
            self._resampler = None

    def live(self, now: float) -> bool:
        """True while cancellation runs: enabled, library present, a recent played chunk."""
        return self._reference_recent(now) and self._load()

    def _reference_recent(self, now: float) -> bool:
        """Enabled, and a played chunk arrived within echo.reference_timeout_s."""
        return (self.config.cancel and self._last_played is not None
                and now - self._last_played <= self.config.reference_timeout_s)

    def converged(self, now: float) -> bool:
        """Live, and echo.converge_s of played audio went through the canceller."""
        return self.frames * FRAME >= self.config.converge_s * MODEL_SAMPLE_RATE \
            and self.live(now)

    def report(self, now: float) -> EchoReport:
        """Live or not, frames cancelled, and the ERLE over the recent frames.

        Safe beside process() in another thread, without its lock: it only reads (a copy of the
        recent energies, taken at once) and never loads the library.
        """
        recent = list(self._recent)
        erle = erle_of(*np.sum(np.asarray(recent), axis=0)) if recent else None
        live = self._canceller is not None and self._reference_recent(now)
        return EchoReport(live, self.frames, erle, self.unavailable or "")

    def _load(self) -> bool:
        if self._canceller is None and self.unavailable is None:
            try:
                self._canceller = WebRtcCanceller(self.config.noise_suppression)
            except MissingModuleError as error:
                self.unavailable = str(error)
        return self._canceller is not None

    def process(self, samples: np.ndarray, first: int, now: float,
                expecting: bool = False) -> tuple[np.ndarray, int]:
        """Cancel echo in microphone samples at timeline index `first`; returns (out, out_first).

        Only whole 10 ms frames come out while cancelling; the rest waits for the next call, and
        so do frames past the reference while playback is `expecting` (the engine's answer is
        playing) or the player's run is open, until echo.reference_wait_s of audio waits.
        """
        if len(self._pending) and self._pending_first + len(self._pending) != first:
            self._pending = np.zeros(0, np.float32)  # the stream jumped: restart framing
        if not len(self._pending):
            self._pending_first = first
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        out_first = self._pending_first
        if not self.config.cancel or self._last_played is None or not self._load():
            out, self._pending = self._pending, np.zeros(0, np.float32)
            return out, out_first  # no player ever reported: there is nothing to wait for
        whole = self._ready(len(self._pending) // FRAME * FRAME, expecting)
        if not self.live(now):  # the reference went stale: frames pass unprocessed
            out = self._pending[:whole]
        else:
            out = np.empty(whole, np.float32)
            for start in range(0, whole, FRAME):
                out[start:start + FRAME] = self._frame(self._pending[start:start + FRAME],
                                                       self._pending_first + start)
        self._pending = self._pending[whole:]
        self._pending_first += whole
        return out, out_first

    def _ready(self, whole: int, expecting: bool) -> int:
        """How many pending samples may be processed now: those the reference covers, unless
        no playback is expected or echo.reference_wait_s of microphone audio waits already."""
        covered = max(0, (self._next_ref - self._pending_first) // FRAME * FRAME)
        bounded = len(self._pending) <= self.reference.capacity
        if whole <= covered or not (expecting or self._run_open):
            self._gave_up = False
            return whole
        if self._gave_up:  # one wait per stall: then on until the reference catches up
            return whole
        # Measured in microphone audio, not on the clock: a busy node that takes a backlog of
        # chunks at once does not give up on a reference still queued behind them, and in real
        # time the two are the same.
        held = len(self._pending) - covered
        if bounded and held < self.config.reference_wait_s * MODEL_SAMPLE_RATE:
            return covered
        self.stats.waits_expired += 1
        self._gave_up = True
        return whole

    def _frame(self, near: np.ndarray, index: int) -> np.ndarray:
        far = self.reference.read(index, FRAME)
        out = self._canceller.process(far, near)
        if float(np.mean(far * far)) > SILENT_REFERENCE:
            mic_energy, out_energy = float(np.dot(near, near)), float(np.dot(out, out))
            self.stats.frames += 1
            self.stats.mic_energy += mic_energy
            self.stats.out_energy += out_energy
            self.frames += 1
            self._recent.append((mic_energy, out_energy))
        return out
