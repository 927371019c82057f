"""The microphone side of the engine: front end, endpointing, listen modes, utterance assembly.

Runs in the threads that feed audio (under the engine's audio lock), never on the model worker,
so voice activity and barge-in are noticed while the model is busy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from stream_omni_ros.engine.audio_input import AudioFrontEnd, PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.echo import EchoCanceller
from stream_omni_ros.engine.events import (SOURCE_PUSH_TO_TALK, SOURCE_SPEECH, InputWarning)
from stream_omni_ros.engine.image_buffer import StampedImage
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.engine.talk_span import TalkSpan
from stream_omni_ros.engine.vad import Endpointer, SpeechAudio, SpeechEnded, SpeechStarted
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE


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
    audio_frame_id: str = ""  # frame_id of the chunk that completed this audio


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
    audio_frame_id: str = ""  # frame_id of the last chunk whose audio the utterance holds


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
        self.echo = EchoCanceller(config.echo, config.audio)
        self._echo_warned = False  # the fallback was announced (again after a live reference)
        self._endpointer = endpointer
        self._next_turn_id = next_turn_id
        self._clock = clock
        self.apply_config(config)
        self._last_warning: dict[str, float] = {}
        self._clock_anchor: float | None = None  # caller-clock time of sample 0 (no stamps)
        self.armed = False  # on_request: the next utterance is a turn
        self.listening = True  # False: microphone chunks are ignored (engine.set_listening)
        self._frame_id = ""  # of the latest chunk fed
        self._next_extras = TurnExtras()  # for the next utterance that begins
        self._closed: tuple[int, int] | None = None  # (turn, end) closed before its audio came
        self._drop_utterance()

    def apply_config(self, config: EngineConfig) -> None:
        """Use new settings from the next chunk on (a changed VAD restarts endpointing)."""
        self.config = config
        self.front_end.config = config.audio
        self.echo.config, self.echo.audio_config = config.echo, config.audio
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
        self._span: TalkSpan | None = None  # push-to-talk: held, or released and completing

    def reset(self) -> int | None:
        """Forget the stream and any utterance in progress; return that utterance's turn id."""
        turn_id = self.turn_id
        self.front_end.reset()
        self._clock_anchor = None
        self._endpointer.reset()
        self._next_extras = TurnExtras()
        self._closed = None
        self._drop_utterance()
        return turn_id

    def abandon(self) -> int | None:
        """Drop the utterance in progress (cancel); the stream itself continues."""
        turn_id = self.turn_id
        self._next_extras = TurnExtras()
        self._drop_utterance()
        return turn_id

    @property
    def waiting_turn(self) -> int | None:
        """The released push-to-talk turn that still waits for audio stamped before release."""
        return self.turn_id if self._span is not None and not self._span.held else None

    def arm(self, extras: TurnExtras) -> None:
        """The next utterance is a turn (on_request) and answers with these extras."""
        self.armed = True
        self._next_extras = extras

    def feed(self, chunk: PcmChunk, responding: bool, speaking: bool = False
             ) -> tuple[list[ListenerCommand], list[InputWarning]]:
        """Convert one chunk and return the resulting commands and input warnings.

        `speaking`: the robot's answer is playing, so the echo canceller expects its reference.
        """
        self._switch_vad_when_idle()
        converted = self.front_end.convert(chunk)
        self._frame_id = chunk.frame_id
        if chunk.stamp is None:
            self._follow_clock()
        warnings = self._input_warnings(converted.gap_s, converted.clipped_fraction)
        warnings += self._late_audio(converted.first_sample, len(converted.samples))
        expired = self.echo.stats.waits_expired
        samples, first = self.echo.process(converted.samples, converted.first_sample,
                                           self._clock(), speaking)
        if self.echo.stats.waits_expired > expired:
            warnings.append(InputWarning(None, "echo_reference_late", (
                f"microphone audio waited echo.reference_wait_s = "
                f"{self.config.echo.reference_wait_s} s for the audio/played covering it and "
                "went on without: echo may pass while the robot speaks")))
        listen = self.config.listen
        if self._span is not None:
            return self._feed_span(samples, first, warnings), warnings
        if listen.mode == "push_to_talk" or (listen.half_duplex and responding
                                             and self.turn_id is None):
            return [], warnings
        self._endpointer.use_min_speech(self._barge_in_min_speech(responding))
        commands: list[ListenerCommand] = []
        for event in self._endpointer.push(samples, first):
            if isinstance(event, SpeechStarted):
                commands += self._on_speech_started(event.start_sample, responding, warnings)
            elif isinstance(event, SpeechAudio) and self.turn_id is not None:
                commands += self._append(event.samples, event.first_sample)
            elif isinstance(event, SpeechEnded) and self.turn_id is not None:
                commands.append(self._finish(event.end_sample, event.reason == "max_length"))
        return commands, warnings

    def add_played(self, chunk: PcmChunk, last: bool = False) -> list[InputWarning]:
        """Store what the speaker played (the echo reference; `last`: its run ended there);
        raises InputError if malformed."""
        if self.echo.add_played(chunk, self._clock(), self.front_end, last):
            return []
        if not self._may_warn("echo_unaligned"):
            return []
        why = "has no stamp" if chunk.stamp is None else "cannot be placed: the microphone " \
            "audio has no stamps (or none arrived yet)"
        return [InputWarning(None, "echo_unaligned", f"played audio {why}; echo cancellation "
                             "needs both on one clock")]

    def _barge_in_min_speech(self, responding: bool) -> int | None:
        """echo.barge_in_min_speech_ms while the robot responds over a converged canceller."""
        if responding and self.config.listen.barge_in and self.echo.converged(self._clock()):
            return self.config.echo.barge_in_min_speech_ms
        return None

    def _echo_fallback(self, warnings: list[InputWarning]) -> bool:
        """True when speech heard while the robot responds may be its own uncancelled voice."""
        if self.echo.live(self._clock()):
            self._echo_warned = False
            return False
        if self.config.echo.without_reference != "no_barge_in":
            return False
        if not self._echo_warned:
            self._echo_warned = True
            why = self.echo.unavailable or ("echo.cancel is false" if not self.config.echo.cancel
                                            else "no audio/played reference is live")
            warnings.append(InputWarning(None, "no_echo_reference", (
                f"speech while the robot responds does not interrupt it ({why}): it may be the "
                "robot's own voice; echo.without_reference = no_barge_in")))
        return True

    def open_turn(self, responding: bool, stamp: float, extras: TurnExtras | None = None
                  ) -> list[ListenerCommand]:
        """Push-to-talk pressed at `stamp`: audio stamped from then on is the utterance."""
        if self._span is not None:
            self._span.release_stamp = None  # pressed again before the released audio came
            return []
        self._span = TalkSpan(stamp)
        if self.turn_id is not None:  # already talking: the utterance now ends on release
            self._extras = extras or self._extras
            received = self.front_end.samples_out
            self._span.place(self.front_end, received, received,
                             self.config.listen.late_audio_wait_s)
            return []
        self._next_extras = extras or self._next_extras
        interrupts = responding and self.config.listen.barge_in
        return self._begin(self.front_end.samples_out, SOURCE_PUSH_TO_TALK, interrupts, stamp)

    def close_turn(self, stamp: float) -> list[ListenerCommand]:
        """Push-to-talk released at `stamp`: the utterance ends once audio up to it arrived."""
        if self._span is None or not self._span.held:
            return []
        self._span.release_stamp, self._span.arrival_end = stamp, self.front_end.samples_out
        end = self._span.end_sample(self.front_end)
        if end is None or end > self.front_end.samples_out:
            return []  # waiting_turn: the engine bounds the wait (expire_release)
        return [self._finish(max(end, self._start), truncated=False)]

    def expire_release(self, turn_id: int) -> tuple[list[ListenerCommand], list[InputWarning]]:
        """The wait for a released turn's late audio is over: answer what arrived."""
        if self.waiting_turn != turn_id:
            return [], []
        arrived = self._start + self._heard
        end = self._span.end_sample(self.front_end)
        missing = "an unknown amount" if end is None else \
            f"{max(0, end - arrived) * 1000 // MODEL_SAMPLE_RATE} ms"
        if end is not None and end > arrived:
            self._closed = (turn_id, end)
        wait_s = self.config.listen.late_audio_wait_s
        warning = InputWarning(turn_id, "late_audio_wait_expired", (
            f"push-to-talk release waited listen.late_audio_wait_s = {wait_s} s for audio "
            f"stamped before it; {missing} of it had not arrived, the turn is answered without"))
        return [self._finish(arrived, truncated=False)], [warning]

    def _on_speech_started(self, start: int, responding: bool,
                           warnings: list[InputWarning]) -> list[ListenerCommand]:
        if self.config.listen.mode == "on_request" and not self.armed:
            return []
        if responding and not self.config.listen.barge_in:
            warnings.append(InputWarning(None, "speech_ignored",
                                         "user speech while the robot responds was ignored "
                                         "(listen.barge_in is false)"))
            return []
        if responding and self._echo_fallback(warnings):
            return []
        self.armed = False
        return self._begin(start, SOURCE_SPEECH, responding)

    def _begin(self, start: int, source: str, responding: bool,
               start_stamp: float | None = None) -> list[ListenerCommand]:
        self.turn_id = self._next_turn_id()
        self._extras, self._next_extras = self._next_extras, TurnExtras()
        self._start = start
        self._start_stamp = self._stamp_of(start) if start_stamp is None else start_stamp
        return [UtteranceBegan(self.turn_id, source, self._start_stamp, responding,
                               self._extras.options, self._extras.image)]

    def _feed_span(self, samples: np.ndarray, first_sample: int,
                   warnings: list[InputWarning]) -> list[ListenerCommand]:
        """Push-to-talk: the first audio after the press places the span on the timeline."""
        if self._span.by_stamps is None:
            self._start, note = self._span.place(self.front_end, first_sample,
                                                 first_sample + len(samples),
                                                 self.config.listen.late_audio_wait_s)
            self._start_stamp = self._stamp_of(self._start)
            if note and self._may_warn("clock_mismatch"):
                warnings.append(InputWarning(self.turn_id, "clock_mismatch", note))
        return self._append(samples, first_sample)

    def _append(self, samples: np.ndarray, first_sample: int) -> list[ListenerCommand]:
        limit = self._start + self._max_samples
        release = self._span.end_sample(self.front_end) if self._span is not None else None
        end = limit if release is None else min(limit, max(release, self._start))
        skip = max(0, self._start - first_sample)
        piece = samples[skip:max(skip, end - first_sample)]
        self._parts.append(piece)
        self._heard += len(piece)
        if self._span is not None and first_sample + len(samples) >= end:
            return [self._finish(end, truncated=release is None or end < release)]
        if self._heard < self._next_partial:
            return []
        self._next_partial = self._heard + self._partial_every
        return [UtterancePartial(self.turn_id, np.concatenate(self._parts), self._frame_id)]

    def _finish(self, end_sample: int, truncated: bool) -> UtteranceEnded:
        audio = np.concatenate(self._parts)[:max(0, end_sample - self._start)] if self._parts \
            else np.zeros(0, np.float32)
        if self._start_stamp is None:  # opened (push-to-talk) before any audio set the clock
            self._start_stamp = self._stamp_of(self._start)
        ended = UtteranceEnded(self.turn_id, audio, self._start_stamp, self._stamp_of(end_sample),
                               time.monotonic(), truncated, self._extras.options,
                               self._extras.image, self._frame_id)
        self._drop_utterance()
        return ended

    def _late_audio(self, first_sample: int, count: int) -> list[InputWarning]:
        """Audio of a turn that was closed before it arrived: dropped, but never silently."""
        if self._closed is None:
            return []
        turn_id, end = self._closed
        if first_sample + count >= end:
            self._closed = None
        late = min(end, first_sample + count) - first_sample
        if late <= 0:
            return []
        return [InputWarning(turn_id, "late_audio", (
            f"{late * 1000 // MODEL_SAMPLE_RATE} ms of audio stamped inside turn {turn_id} "
            "arrived after the turn was closed (listen.late_audio_wait_s) and was dropped"))]

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
