"""The engine in a simulated room: its own voice comes back into the microphone.

The room runs on the audio timeline (10 ms steps, stamped), not on wall time: the engine's clocks
are the room's, and while an answer is being generated the room waits for it, so every figure
(turns, ERLE, barge-in latency) is the same on a loaded machine. The answers are real speech (the
echo responder replays what it heard), loud enough in the microphone to trigger the VAD.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EchoConfig, EngineConfig
from stream_omni_ros.engine.echo import EchoStats, float_to_pcm16
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (SpeechChunk, SpeechInterrupted, TurnCancelled,
                                           TurnFinished)
from stream_omni_ros.engine.simulated_room import SimulatedRoom

pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")

STEP = 160  # 10 ms microphone chunks
START = 1000.0
VOICE_MARGIN_S = 0.3  # a turn starting this long after the user's voice ended is not theirs
QUIET_S = 0.4  # the user speaks after the room was quiet this long
MAX_ROUND_S = 10.0  # a round of self-talk ends here
BARGE_IN_BOUND_S = 0.3  # detection of the user's voice over the robot's, in audio time
ONSET = 0.05  # the voice starts at its first sample this loud relative to its peak


class RoomClock:
    """The room's audio time: the stamp of the end of the microphone chunk being fed."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class RoomRun:
    """The room driving one engine: answers played, turns counted."""

    engine: ConversationEngine
    clock: RoomClock
    room: SimulatedRoom = field(default_factory=SimulatedRoom)
    sample: int = 0
    voice_start: float = -1.0
    voice_until: float = -1.0  # stamp until which the user's voice is in the microphone
    utterances: int = 0  # utterances ended (each gets a TurnFinished or TurnCancelled)
    ends: int = 0
    self_interruptions: int = 0
    user_turns: int = 0
    answers: int = 0  # answers played to their end
    barge_ins: list = field(default_factory=list)  # (voice start stamp, detection stamp)
    stopped: list = field(default_factory=list)  # SpeechInterrupted / TurnCancelled, barge_in
    quiet_latency: list = field(default_factory=list)  # user turns detected in a quiet room

    @property
    def stamp(self) -> float:
        return START + self.sample / 16000

    def _event(self, event) -> None:
        if isinstance(event, SpeechChunk):
            assert event.sample_rate == 16000  # replayed speech is on the 16 kHz timeline
            self.room.speak(event.pcm)
        elif isinstance(event, (TurnFinished, TurnCancelled)):
            self.ends += 1
        if isinstance(event, (SpeechInterrupted, TurnCancelled)) and event.reason == "barge_in":
            self.stopped.append(event)

    def _drain(self) -> None:
        while (event := self.engine.get_event(timeout=0)) is not None:
            self._event(event)
        while self.ends < self.utterances:  # generating: audio time waits for the answer
            event = self.engine.get_event(timeout=120.0)
            assert event is not None, "the engine did not answer"
            self._event(event)

    def step(self, voice: np.ndarray | None = None) -> None:
        """10 ms of room: play, hear, feed the engine, watch who started a turn."""
        self._drain()
        was_speaking, was_user = self.room.speaking, self.engine.state == "user_speaking"
        mic, played = self.room.step(STEP, voice)
        stamp = self.stamp
        # The chunk has been captured when it is fed: the clock reads its end before the
        # engine sees it, so a turn the chunk ends starts at the same audio time whenever the
        # worker thread gets to it.
        self.sample += STEP
        self.clock.now = self.stamp
        if was_speaking:
            self.engine.feed_played(PcmChunk(float_to_pcm16(played), 16000, stamp=stamp))
        self.engine.feed_audio(PcmChunk(float_to_pcm16(mic), 16000, stamp=stamp))
        self.engine.wait_handled()  # lockstep: the worker's reaction lands in this 10 ms
        if was_speaking and not self.room.speaking:
            self.answers += 1
        user = self.engine.state == "user_speaking"
        if user and not was_user:
            self._turn_began(was_speaking)
        if was_user and not user:
            self.utterances += 1

    def _turn_began(self, during_playback: bool) -> None:
        if self.stamp <= self.voice_until + VOICE_MARGIN_S:
            self.user_turns += 1
            if not during_playback:
                self.quiet_latency.append(self.stamp - self.voice_start)
        else:
            self.self_interruptions += 1
        if during_playback:  # the player flushes on USER_SPEAKING
            self.room.silence_speaker()
            self.barge_ins.append((self.voice_start, self.stamp))

    def say(self, speech: np.ndarray) -> None:
        """The user speaks now (during playback too)."""
        onset = int(np.argmax(np.abs(speech) >= ONSET * np.abs(speech).max()))
        self.voice_start = self.stamp + onset / 16000
        self.voice_until = self.stamp + len(speech) / 16000
        for start in range(0, len(speech), STEP):
            self.step(speech[start:start + STEP])

    def wait_quiet(self, limit_s: float = MAX_ROUND_S) -> None:
        """Let the room run until nobody speaks and no answer is pending (or the limit)."""
        quiet, end = 0, self.sample + int(limit_s * 16000)
        while quiet < QUIET_S * 16000 and self.sample < end:
            self.step()
            # only what the room's own thread decides: the worker's thinking/speaking state
            # changes on its thread's schedule and would shift the next question in audio time
            busy = (self.room.speaking or self.ends < self.utterances
                    or self.engine.state == "user_speaking")
            quiet = 0 if busy else quiet + STEP

    def play_until(self, seconds: float) -> None:
        """Run the room for `seconds` of audio."""
        for _ in range(int(seconds * 100)):
            self.step()


def room_engine(silero, cancel: bool) -> tuple[ConversationEngine, RoomClock]:
    clock = RoomClock()
    config = EngineConfig(echo=EchoConfig(cancel=cancel, without_reference="barge_in"))
    engine = ConversationEngine(EchoResponder(replay_heard=True), config,
                                speech_probability=silero, clock=clock, playback_clock=clock)
    return engine, clock


def test_room_echo_interrupts_without_cancellation_and_never_with_it(silero, speak):
    questions = [speak(text) for text in (
        "Where is the kitchen?", "Please bring me a glass of water.",
        "What is the weather like today?")]
    stop = speak("Hey, wait a moment.", name="user")

    engine, clock = room_engine(silero, cancel=False)
    off = RoomRun(engine, clock)
    try:
        for question in questions:
            off.say(question)
            off.wait_quiet()
    finally:
        engine.stop()
    print(f"cancellation off: {off.self_interruptions} self-interruptions in "
          f"{off.user_turns} user turns")
    assert off.user_turns >= 1  # self-talk may swallow a later question
    assert off.self_interruptions > 0

    engine, clock = room_engine(silero, cancel=True)
    on = RoomRun(engine, clock)
    try:
        on.say(questions[0])
        on.wait_quiet()  # the first answer lets the canceller converge
        engine.echo_stats.__dict__.update(EchoStats().__dict__)
        for index in range(10):
            on.say(questions[index % len(questions)])
            on.wait_quiet()
        erle = engine.echo_stats.erle_db()
        answers = on.answers
        on.say(questions[1])
        while not on.room.speaking:  # endpoint, then the answer starts playing
            on.step()
        on.play_until(0.5)  # the user talks over the answer
        assert on.room.speaking
        on.say(stop)
        on.wait_quiet()
    finally:
        engine.stop()
    latency = [detected - began for began, detected in on.barge_ins]
    print(f"cancellation on: {on.self_interruptions} self-interruptions in {on.user_turns} "
          f"user turns, {answers} answers played; ERLE {erle:.1f} dB; barge-in during playback "
          f"detected {[round(s * 1000) for s in latency]} ms after the voice began (in a quiet "
          f"room: median {np.median(on.quiet_latency) * 1000:.0f} ms)")
    assert on.self_interruptions == 0
    assert answers >= 11
    assert erle >= 20.0
    # Double talk: the canceller's suppressor holds the user's first syllables back while the
    # robot speaks; echo.barge_in_min_speech_ms keeps the VAD from adding 250 ms on top.
    assert len(latency) == 1 and latency[0] <= BARGE_IN_BOUND_S
    assert [e.reason for e in on.stopped] == ["barge_in"]
