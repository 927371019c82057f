"""The microphone side of the engine: front end, endpointing, listen modes, utterance assembly.

Runs in the threads that feed audio (under the engine's audio lock), never on the model worker,
so voice activity and barge-in are noticed while the model is busy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from stream_omni_ros.engine.audio_input import MODEL_SAMPLE_RATE, AudioFrontEnd, PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.events import (SOURCE_PUSH_TO_TALK, SOURCE_SPEECH, InputWarning)
from stream_omni_ros.engine.image_buffer import StampedImage
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.engine.vad import Endpointer, SpeechAudio, SpeechEnded, SpeechStarted


@dataclass(frozen=True)
class UtteranceBegan:
    """The user started a turn (worker: announce it, prefill what is known)."""

    turn_id: int
    source: str
    start_stamp: float | None
    barge_in: bool  # it interrupted the robot
    options: TurnOptions = field(default_factory=TurnOptions)
    image: StampedImage | None = None  # given with the request: used instead of the camera


@dataclass(frozen=True)
class UtterancePartial:
    """Audio of the utterance so far (worker: partial transcript)."""

    turn_id: int
    audio: np.ndarray


@dataclass(frozen=True)
class UtteranceEnded:
    """The whole utterance (worker: answer it)."""

    turn_id: int
    audio: np.ndarray
    start_stamp: float | None
    end_stamp: float | None
    endpoint_time: float  # time.monotonic() when the end was detected
    truncated: bool
    options: TurnOptions = field(default_factory=TurnOptions)
    image: StampedImage | None = None  # given with the request: used instead of the camera


@dataclass(frozen=True)
class TurnExtras:
    """What a request for the next utterance asked for: options and an explicit image."""

    options: TurnOptions = field(default_factory=TurnOptions)
    image: StampedImage | None = None


ListenerCommand = Union[UtteranceBegan, UtterancePartial, UtteranceEnded]


class Listener:
    """Turns PCM chunks into utterance commands according to the listen mode."""

    def __init__(self, config: EngineConfig, endpointer: Endpointer,
                 next_turn_id: Callable[[], int], clock: Callable[[], float]) -> None:
        self.front_end = AudioFrontEnd(config.audio)
        self._endpointer = endpointer
        self._next_turn_id = next_turn_id
        self._clock = clock
        self.apply_config(config)
        self._last_warning: dict[str, float] = {}
        self._clock_anchor: float | None = None  # caller-clock time of sample 0 (no stamps)
        self.armed = False  # on_request: the next utterance is a turn
        self._next_extras = TurnExtras()  # for the next utterance that begins
        self._ptt_open = False
        self._drop_utterance()

    def apply_config(self, config: EngineConfig) -> None:
        """Use new settings from the next chunk on (a changed VAD restarts endpointing)."""
        self.config = config
        self.front_end.config = config.audio
        self._switch_vad_when_idle()
        self._max_samples = int(config.vad.max_utterance_s * MODEL_SAMPLE_RATE)
        self._partial_every = int(config.conversation.partial_interval_s * MODEL_SAMPLE_RATE)

    def _switch_vad_when_idle(self) -> None:
        # a new endpointer mid-utterance would lose its start; wait for the utterance to end
        if self._endpointer.config == self.config.vad or getattr(self, "turn_id", None):
            return
        self._endpointer = Endpointer(self.config.vad, self._endpointer.speech_probability)
        self._endpointer.reset(self.front_end.samples_out)

    def _drop_utterance(self) -> None:
        self.turn_id: int | None = None
        self._parts: list[np.ndarray] = []
        self._heard = 0
        self._start = 0
        self._start_stamp: float | None = None
        self._next_partial = self._partial_every
        self._extras = TurnExtras()

    def reset(self) -> int | None:
        """Forget the stream and any utterance in progress; return that utterance's turn id."""
        turn_id = self.turn_id
        self.front_end.reset()
        self._clock_anchor = None
        self._endpointer.reset()
        self._ptt_open = False
        self._next_extras = TurnExtras()
        self._drop_utterance()
        return turn_id

    def abandon(self) -> int | None:
        """Drop the utterance in progress (cancel); the stream itself continues."""
        turn_id = self.turn_id
        self._ptt_open = False
        self._next_extras = TurnExtras()
        self._drop_utterance()
        return turn_id

    def arm(self, extras: TurnExtras) -> None:
        """The next utterance is a turn (on_request) and answers with these extras."""
        self.armed = True
        self._next_extras = extras

    def feed(self, chunk: PcmChunk, responding: bool
             ) -> tuple[list[ListenerCommand], list[InputWarning]]:
        """Convert one chunk and return the resulting commands and input warnings."""
        self._switch_vad_when_idle()
        converted = self.front_end.convert(chunk)
        if chunk.stamp is None:
            self._follow_clock()
        warnings = self._input_warnings(converted.gap_s, converted.clipped_fraction)
        listen = self.config.listen
        if self._ptt_open:
            return self._append(converted.samples, converted.first_sample), warnings
        if listen.mode == "push_to_talk" or (listen.half_duplex and responding
                                             and self.turn_id is None):
            return [], warnings
        commands: list[ListenerCommand] = []
        for event in self._endpointer.push(converted.samples, converted.first_sample):
            if isinstance(event, SpeechStarted):
                commands += self._on_speech_started(event.start_sample, responding, warnings)
            elif isinstance(event, SpeechAudio) and self.turn_id is not None:
                commands += self._append(event.samples, event.first_sample)
            elif isinstance(event, SpeechEnded) and self.turn_id is not None:
                commands.append(self._finish(event.end_sample, event.reason == "max_length"))
        return commands, warnings

    def open_turn(self, responding: bool, extras: TurnExtras | None = None
                  ) -> list[ListenerCommand]:
        """Push-to-talk pressed: everything from the next sample on is the utterance."""
        if self._ptt_open:
            return []
        self._ptt_open = True
        if self.turn_id is not None:  # already talking: the utterance now ends on release
            self._extras = extras or self._extras
            return []
        self._next_extras = extras or self._next_extras
        interrupts = responding and self.config.listen.barge_in
        return self._begin(self.front_end.samples_out, SOURCE_PUSH_TO_TALK, interrupts)

    def close_turn(self) -> list[ListenerCommand]:
        """Push-to-talk released: the utterance ends at the last sample received."""
        if not self._ptt_open:
            return []
        self._ptt_open = False
        return [self._finish(self._start + self._heard, truncated=False)]

    def _on_speech_started(self, start: int, responding: bool,
                           warnings: list[InputWarning]) -> list[ListenerCommand]:
        if self.config.listen.mode == "on_request" and not self.armed:
            return []
        if responding and not self.config.listen.barge_in:
            warnings.append(InputWarning(None, "speech_ignored",
                                         "user speech while the robot responds was ignored "
                                         "(listen.barge_in is false)"))
            return []
        self.armed = False
        return self._begin(start, SOURCE_SPEECH, responding)

    def _begin(self, start: int, source: str, responding: bool) -> list[ListenerCommand]:
        self.turn_id = self._next_turn_id()
        self._extras, self._next_extras = self._next_extras, TurnExtras()
        self._start = start
        self._start_stamp = self._stamp_of(start)
        return [UtteranceBegan(self.turn_id, source, self._start_stamp, responding,
                               self._extras.options, self._extras.image)]

    def _append(self, samples: np.ndarray, first_sample: int) -> list[ListenerCommand]:
        skip = max(0, self._start - first_sample)
        room = self._max_samples - self._heard
        piece = samples[skip:skip + room]
        self._parts.append(piece)
        self._heard += len(piece)
        if self._ptt_open and self._heard >= self._max_samples:
            self._ptt_open = False
            return [self._finish(self._start + self._heard, truncated=True)]
        if self._heard < self._next_partial:
            return []
        self._next_partial = self._heard + self._partial_every
        return [UtterancePartial(self.turn_id, np.concatenate(self._parts))]

    def _finish(self, end_sample: int, truncated: bool) -> UtteranceEnded:
        audio = np.concatenate(self._parts)[:max(0, end_sample - self._start)] if self._parts \
            else np.zeros(0, np.float32)
        if self._start_stamp is None:  # opened (push-to-talk) before any audio set the clock
            self._start_stamp = self._stamp_of(self._start)
        ended = UtteranceEnded(self.turn_id, audio, self._start_stamp, self._stamp_of(end_sample),
                               time.monotonic(), truncated, self._extras.options,
                               self._extras.image)
        self._drop_utterance()
        return ended

    def _follow_clock(self) -> None:
        """Source without stamps: place the timeline on the caller's clock by arrival time."""
        now = self._clock()
        expected = None
        if self._clock_anchor is not None:
            expected = self._clock_anchor + self.front_end.samples_out / MODEL_SAMPLE_RATE
        # re-anchor when the feed paused; a source faster than real time (a file) keeps its
        # own timeline so that start and end of one utterance stay consistent
        if expected is None or now - expected > 1.0:
            self._clock_anchor = now - self.front_end.samples_out / MODEL_SAMPLE_RATE

    def _stamp_of(self, sample: int) -> float | None:
        stamp = self.front_end.sample_to_stamp(sample)
        if stamp is None and self._clock_anchor is not None:
            stamp = self._clock_anchor + sample / MODEL_SAMPLE_RATE
        return stamp

    def _input_warnings(self, gap_s: float, clipped: float) -> list[InputWarning]:
        warnings = []
        if gap_s > 0 and self._may_warn("gap"):
            warnings.append(InputWarning(self.turn_id, "gap",
                                         f"{gap_s * 1000:.0f} ms of microphone audio missing"))
        if clipped >= self.config.audio.clip_warning_fraction and clipped > 0 \
                and self._may_warn("clipping"):
            warnings.append(InputWarning(self.turn_id, "clipping",
                                         f"{clipped:.1%} of microphone samples at full scale"))
        return warnings

    def _may_warn(self, kind: str) -> bool:
        # one warning of a kind per second is enough for a log; more would flood it
        now = time.monotonic()
        if now - self._last_warning.get(kind, -1e9) < 1.0:
            return False
        self._last_warning[kind] = now
        return True
