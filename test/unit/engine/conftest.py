"""Engine test fixtures: the silero VAD, clocks, a microphone feeder, engines."""
from __future__ import annotations

import time

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import TurnCancelled, TurnFinished
from stream_omni_ros.engine.vad import SileroVad


@pytest.fixture(scope="session")
def silero() -> SileroVad:
    """The real silero-vad model shipped with the silero_vad package (shared, reset per use)."""
    return SileroVad()


class ManualClock:
    """A clock that moves only when the test moves it (time-based behaviour, no sleeping)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Let `seconds` pass."""
        self.now += seconds


class Mic:
    """Feeds 16 kHz float audio to an engine as stamped 40 ms S16LE chunks, like a driver.

    With a clock, the clock reads the end of each chunk once it is delivered, as for a live
    microphone whose chunks arrive as soon as they are recorded.
    """

    def __init__(self, engine: ConversationEngine, start_stamp: float = 1000.0,
                 clock: ManualClock | None = None, frame_id: str = "") -> None:
        self.engine, self.seq, self.stamp, self.clock = engine, 0, start_stamp, clock
        self.frame_id = frame_id
        if clock is not None:
            clock.now = start_stamp

    def chunk(self, samples: np.ndarray) -> PcmChunk:
        """The next S16LE chunk holding `samples`, stamped and numbered (the mic moves on)."""
        pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2")
        chunk = PcmChunk(pcm.tobytes(), 16000, stamp=self.stamp, seq=self.seq,
                         frame_id=self.frame_id)
        self.seq += 1
        self.stamp += len(pcm) / 16000
        if self.clock is not None:
            self.clock.now = self.stamp
        return chunk

    def play(self, samples: np.ndarray) -> None:
        """Send samples in 40 ms chunks."""
        for i in range(0, len(samples), 640):
            self.engine.feed_audio(self.chunk(samples[i:i + 640]))


def _collect(engine: ConversationEngine, until=None, timeout: float = 60.0) -> list:
    """Events up to and including the first that satisfies until (default: a turn's end)."""
    until = until or (lambda e: isinstance(e, (TurnFinished, TurnCancelled)))
    events, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        event = engine.get_event(timeout=0.1)
        if event is not None:
            events.append(event)
            if until(event):
                return events
    raise AssertionError(f"timed out; got {[type(e).__name__ for e in events]}")


@pytest.fixture
def mic():
    """mic(engine, start_stamp=1000.0) -> a Mic feeding that engine."""
    return Mic


@pytest.fixture
def collect():
    """collect(engine, until=None, timeout=60) -> events up to the first match (turn end)."""
    return _collect


@pytest.fixture
def manual_clock():
    """ManualClock(now=1000.0): pass as an engine's clock or playback_clock."""
    return ManualClock


@pytest.fixture
def engine_factory(silero):
    """make(responder=None, clock=None, playback_clock=None, **config_groups) -> an engine,
    stopped after the test (clocks default to the engine's own)."""
    engines = []

    def make(responder=None, clock=None, playback_clock=None, **groups) -> ConversationEngine:
        clocks = {name: value for name, value in
                  (("clock", clock), ("playback_clock", playback_clock)) if value is not None}
        engine = ConversationEngine(responder or EchoResponder(), EngineConfig(**groups),
                                    speech_probability=silero, **clocks)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop()
