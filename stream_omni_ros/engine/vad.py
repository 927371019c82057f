"""Voice activity detection (silero-vad) and the endpointer that cuts the mic stream into turns."""
from __future__ import annotations

import warnings

from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from stream_omni_ros.dependencies import require_module
from stream_omni_ros.engine.config import VadConfig
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

FRAME_SAMPLES = 512  # silero-vad's window at 16 kHz (32 ms)


class SileroVad:
    """Speech probability of consecutive 512-sample frames at 16 kHz (silero-vad ONNX, CPU)."""

    def __init__(self) -> None:
        import torch

        silero_vad = require_module("silero_vad", "voice activity detection needs it")

        self._torch = torch
        with warnings.catch_warnings():
            # silero_vad locates its bundled weights with a deprecated importlib call
            warnings.simplefilter("ignore", DeprecationWarning)
            self._model = silero_vad.load_silero_vad(onnx=True)

    def __call__(self, frame: np.ndarray) -> float:
        """Probability that this frame (continuing the previous ones) holds speech."""
        return float(self._model(self._torch.from_numpy(frame), MODEL_SAMPLE_RATE))

    def reset(self) -> None:
        """Forget the recurrent state (call when the stream is discontinuous)."""
        self._model.reset_states()


@dataclass(frozen=True)
class SpeechStarted:
    """The user started talking; audio from start_sample on belongs to the utterance."""

    start_sample: int


@dataclass(frozen=True)
class SpeechAudio:
    """Utterance audio, possibly running past the end sample reported later (trim to it)."""

    samples: np.ndarray  # [N] float32, 16 kHz
    first_sample: int


@dataclass(frozen=True)
class SpeechEnded:
    """The utterance ended at end_sample (exclusive); reason is "silence", "max_length" or
    "closed"."""

    end_sample: int
    reason: str


VadEvent = Union[SpeechStarted, SpeechAudio, SpeechEnded]
_IDLE, _CANDIDATE, _SPEECH, _WAIT_PAUSE = range(4)


class Endpointer:
    """Frame-wise state machine: minimum speech, silence hangover, padding, maximum length.

    After a cut at max_utterance_s the rest of the monologue is ignored until the speaker pauses
    for min_silence_ms, so one long monologue does not turn into a burst of turns.
    """

    def __init__(self, config: VadConfig, speech_probability: Callable[[np.ndarray], float]):
        self.config = config
        self.speech_probability = speech_probability
        ms = MODEL_SAMPLE_RATE // 1000
        self._min_speech = config.min_speech_ms * ms
        self._start_after = self._min_speech  # voiced samples that start speech now
        self._min_silence = config.min_silence_ms * ms
        self._pad = config.speech_pad_ms * ms
        self._max_len = int(config.max_utterance_s * MODEL_SAMPLE_RATE)
        self._keep = self._pad + self._min_speech + self._min_silence + 2 * FRAME_SAMPLES
        self.reset()

    def reset(self, next_sample: int = 0) -> None:
        """Drop all state; the next pushed sample is expected at next_sample."""
        self._state = _IDLE
        self._pending = np.zeros(0, np.float32)
        self._next = next_sample  # timeline index of _pending[0]
        self._recent = np.zeros(0, np.float32)  # audio before _next, for the pre-roll
        self._voiced = self._silence = 0
        self._candidate_start = self._start = self._last_end = next_sample
        self._last_voiced_end = next_sample
        if hasattr(self.speech_probability, "reset"):
            self.speech_probability.reset()

    def use_min_speech(self, ms: int | None) -> None:
        """Voiced audio needed to start speech from now on; None: vad.min_speech_ms."""
        ms = self.config.min_speech_ms if ms is None else min(ms, self.config.min_speech_ms)
        self._start_after = ms * (MODEL_SAMPLE_RATE // 1000)

    @property
    def in_speech(self) -> bool:
        """True between SpeechStarted and SpeechEnded."""
        return self._state == _SPEECH

    def push(self, samples: np.ndarray, first_sample: int) -> list[VadEvent]:
        """Feed 16 kHz audio starting at timeline index first_sample; return the events."""
        events: list[VadEvent] = []
        expected = self._next + len(self._pending)
        if first_sample != expected:
            events += self.close("closed") if self._state == _SPEECH else []
            self.reset(first_sample)
        self._pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        while len(self._pending) >= FRAME_SAMPLES:
            frame, self._pending = self._pending[:FRAME_SAMPLES], self._pending[FRAME_SAMPLES:]
            events += self._step(frame)
            self._recent = np.concatenate([self._recent, frame])[-self._keep:]
            self._next += FRAME_SAMPLES
        return events

    def close(self, reason: str = "closed") -> list[VadEvent]:
        """End an utterance in progress now (push-to-talk release, shutdown)."""
        if self._state != _SPEECH:
            return []
        end = self._next
        self._state, self._last_end = _IDLE, end
        return [SpeechEnded(end, reason)]

    def _step(self, frame: np.ndarray) -> list[VadEvent]:
        p = self.speech_probability(frame)
        frame_end = self._next + FRAME_SAMPLES
        voiced = p >= self.config.threshold
        unvoiced = p < self.config.threshold - self.config.release_margin
        self._silence = self._silence + FRAME_SAMPLES if unvoiced else 0
        if self._state == _IDLE and voiced:
            self._state, self._candidate_start, self._voiced = _CANDIDATE, self._next, 0
        if self._state == _CANDIDATE:
            return self._step_candidate(frame, unvoiced)
        if self._state == _SPEECH:
            return self._step_speech(frame, unvoiced, frame_end)
        if self._state == _WAIT_PAUSE and self._silence >= self._min_silence:
            self._state = _IDLE
        return []

    def _step_candidate(self, frame: np.ndarray, unvoiced: bool) -> list[VadEvent]:
        if self._silence >= self._min_silence:
            self._state = _IDLE
            return []
        if unvoiced:
            return []
        self._voiced += FRAME_SAMPLES
        self._last_voiced_end = self._next + FRAME_SAMPLES
        if self._voiced < self._start_after:
            return []
        recent_start = self._next - len(self._recent)
        start = max(self._candidate_start - self._pad, recent_start, self._last_end)
        self._state, self._start = _SPEECH, start
        preroll = self._recent[start - recent_start:]
        return [SpeechStarted(start), SpeechAudio(np.concatenate([preroll, frame]), start)]

    def _step_speech(self, frame: np.ndarray, unvoiced: bool, frame_end: int) -> list[VadEvent]:
        events: list[VadEvent] = [SpeechAudio(frame, self._next)]
        if not unvoiced:
            self._last_voiced_end = frame_end
        if self._silence >= self._min_silence:
            end = min(self._last_voiced_end + self._pad, frame_end)
            self._state, self._last_end = _IDLE, end
            events.append(SpeechEnded(end, "silence"))
        elif frame_end - self._start >= self._max_len:
            end = self._start + self._max_len
            self._state, self._last_end, self._silence = _WAIT_PAUSE, end, 0
            events.append(SpeechEnded(end, "max_length"))
        return events
