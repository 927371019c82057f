"""Microphone watchdog: an utterance whose audio stops arriving is abandoned (explicit clock)."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.audio_watchdog import AudioWatchdog
from stream_omni_ros.engine.config import AudioInputConfig, EngineConfig, ListenConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import InputWarning, TurnCancelled, TurnFinished


class ManualClock:
    """The engine clock, moved by the test only."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watched(silero):
    """watched(mode) -> (engine, clock): stall_timeout_s 2 s, every time from the clock."""
    engines = []

    def make(mode: str) -> tuple[ConversationEngine, ManualClock]:
        clock = ManualClock()
        config = EngineConfig(audio=AudioInputConfig(stall_timeout_s=2.0),
                              listen=ListenConfig(mode=mode))
        engine = ConversationEngine(EchoResponder(seconds_per_word=0.01), config,
                                    speech_probability=silero, clock=clock)
        engines.append(engine)
        return engine, clock

    yield make
    for engine in engines:
        engine.stop()


def feed(engine: ConversationEngine, clock: ManualClock, samples: np.ndarray) -> None:
    """Send 40 ms S16LE chunks stamped on the clock, moving it on as a driver would."""
    pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2")
    for i in range(0, len(pcm), 640):
        engine.feed_audio(PcmChunk(pcm[i:i + 640].tobytes(), 16000, stamp=clock.now))
        clock.now += 0.04


def test_watchdog_waits_and_restarts_after_a_clock_step_back():
    watchdog = AudioWatchdog()
    assert watchdog.silent_for(10.0) == 0.0  # nothing heard yet: the wait starts now
    watchdog.heard(1000.0)
    assert watchdog.silent_for(1002.5) == 2.5
    assert watchdog.silent_for(5.0) == 0.0  # the clock stepped back
    assert watchdog.silent_for(7.0) == 2.0


def test_push_to_talk_utterance_without_audio_is_abandoned_after_the_stall_timeout(
        watched, collect):
    engine, clock = watched("push_to_talk")
    turn_id = engine.open_turn()
    feed(engine, clock, np.full(8000, 0.1, np.float32))  # half a second, then the driver dies
    clock.now += 1.9
    assert engine.check_audio_watchdog() is None
    assert engine.state == "user_speaking"
    clock.now += 0.2
    assert engine.check_audio_watchdog() == turn_id
    assert engine.state == "idle"
    events = collect(engine)
    warning = [e for e in events if isinstance(e, InputWarning)]
    assert [w.kind for w in warning] == ["audio_lost"] and warning[0].turn_id == turn_id
    assert "2.1 s" in warning[0].message
    assert isinstance(events[-1], TurnCancelled) and events[-1].reason == "audio_lost"
    assert events[-1].turn_id == turn_id
    engine.close_turn()  # the late release finds nothing open
    assert engine.check_audio_watchdog(clock.now + 10) is None

    next_id = engine.open_turn()  # the microphone is back: the next press is answered
    feed(engine, clock, np.full(8000, 0.1, np.float32))
    engine.close_turn()
    done = collect(engine)[-1]
    assert isinstance(done, TurnFinished) and done.turn_id == next_id


def test_spoken_utterance_cut_off_by_a_dead_microphone_is_abandoned(watched, collect, speak):
    engine, clock = watched("always")
    speech = speak("Please look at the table and tell me what you see on it.")
    feed(engine, clock, np.zeros(8000, np.float32))
    feed(engine, clock, speech[:24000])  # 1.5 s into the question the stream stops
    assert engine.state == "user_speaking"
    clock.now += 2.5
    turn_id = engine.check_audio_watchdog()
    assert turn_id is not None and engine.state == "listening"
    cancelled = collect(engine)[-1]
    assert isinstance(cancelled, TurnCancelled) and cancelled.reason == "audio_lost"

    feed(engine, clock, np.concatenate([speech, np.zeros(16000, np.float32)]))
    done = collect(engine)[-1]  # a restarted stream is heard from scratch
    assert isinstance(done, TurnFinished) and done.turn_id > turn_id
