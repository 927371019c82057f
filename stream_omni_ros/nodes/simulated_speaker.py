"""A loudspeaker in simulation: plays a PlaybackQueue as the node clock advances.

No sound device: each time the clock moves, the speaker plays the queued audio up to one period
past the new time, as a sound card's buffer would hold it, and hands what it played, silence
included, to `on_sound` (audio_player_node publishes it on `audio/speaker`, for a simulated
room's microphone). Chunks that carried queued audio also go to `on_played`, exactly as the
PortAudio device reports them, so the echo reference of a simulated robot is built by the same
code as a real one's (doc/architecture.md §5.2).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from stream_omni_ros.nodes.playback import PlaybackQueue

PERIOD_S = 0.02  # one period of the simulated device
MAX_CATCH_UP_S = 1.0  # a clock that jumps further ahead skips the silence in between
TICK_TOLERANCE_S = 1e-6  # period ends summed in floats land a hair off the clock's ticks
# on_played(frames int16 [n, channels], sample_rate, clock time the first is heard [s],
# still_playing): the chunks that carried queued audio
StampedPlayedCallback = Callable[[np.ndarray, int, float, bool], None]
# on_sound(frames int16 [n, channels], sample_rate, clock time the first is heard [s])
SoundCallback = Callable[[np.ndarray, int, float], None]


class SimulatedSpeaker:
    """Plays on a clock given to tick(), one chunk per tick; the first starts at the first
    tick."""

    def __init__(self, queue: PlaybackQueue, fmt: tuple[int, int],
                 on_played: StampedPlayedCallback, on_sound: SoundCallback) -> None:
        self.queue, self.fmt = queue, fmt
        self.on_played, self.on_sound = on_played, on_sound
        self.position: float | None = None  # clock time where the next chunk starts
        self.latency_s = PERIOD_S  # what the speaker holds: heard after a flush

    def tick(self, now: float) -> int:
        """Play what is due by one period past `now`, as one chunk; return its frames."""
        if self.position is None or self.position > now + 2 * PERIOD_S \
                or self.position < now - MAX_CATCH_UP_S:
            self.position = now  # the first tick, a clock set back, or a long jump ahead
        if self.position > now + TICK_TOLERANCE_S:
            return 0  # this clock time was played already
        self.fmt = self.queue.head_fmt() or self.fmt  # the last one's when nothing is queued
        rate, channels = self.fmt
        out = np.zeros((int(round((now + PERIOD_S - self.position) * rate)), channels), np.int16)
        stamp = self.position
        filled, playing = self.queue.pull(out, self.fmt)
        if filled:
            self.on_played(out[:filled], rate, stamp, playing)
        self.on_sound(out, rate, stamp)
        self.position = stamp + out.shape[0] / rate
        return out.shape[0]
