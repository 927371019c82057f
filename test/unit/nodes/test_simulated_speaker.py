"""The simulated speaker plays its queue as the clock given to it advances, a period ahead."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.nodes.playback import PlaybackQueue
from stream_omni_ros.nodes.simulated_speaker import PERIOD_S, SimulatedSpeaker

RATE = 16000
PERIOD = int(PERIOD_S * RATE)


class Clock:
    """The simulated clock, set by the test."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def speaker():
    """A speaker whose played periods and sound are recorded: (speaker, queue, clock, logs)."""
    clock = Clock()
    queue = PlaybackQueue(jitter_buffer_s=0.04, max_queue_s=10.0, clock=clock)
    played, sound = [], []
    speaker = SimulatedSpeaker(queue, (RATE, 1),
                               lambda f, r, s, p: played.append((f.copy(), r, s, p)),
                               lambda f, r, s: sound.append((f.copy(), r, s)))
    return speaker, queue, clock, played, sound


def ramp(frames: int, start: int = 1) -> np.ndarray:
    """Distinct int16-exact samples, to follow every frame through the speaker."""
    return (np.arange(start, start + frames, dtype=np.float32) / 32768.0)[:, None]


def advance(speaker, clock: Clock, periods: int) -> None:
    """Tick once per period, as a node-clock timer does."""
    for _ in range(periods):
        speaker.tick(clock.now)
        clock.now += PERIOD_S


def test_silence_is_sound_but_not_played(speaker):
    sim, _, clock, played, sound = speaker
    advance(sim, clock, 3)
    assert played == []
    assert [s for _, _, s in sound] == pytest.approx([100.0, 100.02, 100.04])
    assert all(f.shape == (PERIOD, 1) and not f.any() for f, _, _ in sound)


def test_queued_audio_plays_after_the_jitter_buffer_with_contiguous_stamps(speaker):
    sim, queue, clock, played, sound = speaker
    advance(sim, clock, 1)
    queue.put(ramp(3 * PERIOD + 100), RATE, end_of_stream=False)
    advance(sim, clock, 6)
    # 0.06 s queued >= the 0.04 s jitter buffer: it starts at the next tick, in whole periods
    assert [s for _, _, s, _ in played] == pytest.approx([100.02, 100.04, 100.06, 100.08])
    assert [p for _, _, _, p in played] == [True, True, True, False]  # the run ends dry
    heard = np.concatenate([f for f, _, _, _ in played])[:, 0]
    assert heard.tolist() == list(range(1, 3 * PERIOD + 101))
    # the sound carries the same samples at the same stamps, padded with silence
    sound_at = {round(s, 6): f[:, 0] for f, _, s in sound}
    assert sound_at[100.08][:100].tolist() == list(range(3 * PERIOD + 1, 3 * PERIOD + 101))
    assert not sound_at[100.08][100:].any() and not sound_at[100.1].any()


def test_a_tick_plays_one_period_ahead_and_catches_up_after_a_jump(speaker):
    sim, _, clock, _, sound = speaker
    assert sim.tick(100.0) == PERIOD  # [100.00, 100.02) is in the device after the first tick
    assert sim.tick(100.0) == 0  # the same time again plays nothing
    assert sim.tick(100.1) == 5 * PERIOD  # a clock that jumped 0.1 s: what it passed, at once
    assert sim.position == pytest.approx(100.12)
    assert [s for _, _, s in sound] == pytest.approx([100.0, 100.02])
    assert sim.tick(50.0) == PERIOD  # a clock set back (a simulation reset) starts over
    assert sound[-1][2] == 50.0


def test_flush_silences_the_next_period(speaker):
    sim, queue, clock, played, sound = speaker
    queue.put(ramp(10 * PERIOD), RATE, end_of_stream=True)
    advance(sim, clock, 2)
    assert queue.flush() == pytest.approx(8 * PERIOD_S)
    advance(sim, clock, 2)
    assert len(played) == 2
    assert not sound[-1][0].any() and not sound[-2][0].any()


def test_a_new_rate_plays_from_the_next_period(speaker):
    sim, queue, clock, played, sound = speaker
    queue.put(ramp(PERIOD // 2), RATE, end_of_stream=False)
    queue.put(ramp(441, start=7), 22050, end_of_stream=True)
    advance(sim, clock, 2)
    assert [(len(f), r) for f, r, _, _ in played] == [(PERIOD // 2, RATE), (441, 22050)]
    assert [(len(f), r) for f, r, _ in sound] == [(PERIOD, RATE), (441, 22050)]
    assert sound[1][2] == pytest.approx(100.02)
