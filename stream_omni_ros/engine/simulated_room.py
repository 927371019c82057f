"""A simulated room: what the loudspeaker plays comes back into the microphone as an echo.

For tests and benchmarks of echo cancellation without a sound card: the echo is the played audio
delayed (the acoustic path plus the sound card's latencies), filtered by a decaying impulse
response (reflections) and scaled; the user's voice and a little noise are added on top. Works on
the engine's 16 kHz mono timeline in steps of any size.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

from stream_omni_ros.errors import ConfigError

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class RoomConfig:
    """Acoustics of the simulated room."""

    delay_s: float = 0.08  # loudspeaker to microphone, sound card latencies included
    # direct-path amplitude of the echo relative to the played audio: at 0.1 the robot's voice
    # reaches the microphone about 16 dB below a user's at a metre, and still triggers the VAD
    gain: float = 0.1
    decay_s: float = 0.04  # time for the reflections to fall by 1/e
    response_s: float = 0.15  # length of the impulse response
    noise: float = 3e-4  # standard deviation of the microphone's own noise
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.delay_s <= 1 or not 0 < self.response_s <= 1:
            raise ConfigError(f"room delay_s = {self.delay_s}, response_s = {self.response_s}: "
                              "expected 0..1 s and (0, 1] s")


def impulse_response(config: RoomConfig) -> np.ndarray:
    """Delay, direct path and exponentially decaying random reflections [samples]."""
    rng = np.random.default_rng(config.seed)
    length = int(config.response_s * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    reflections = rng.normal(0.0, 0.25, length) * np.exp(-t / config.decay_s)
    reflections[0] = 1.0
    delay = np.zeros(int(round(config.delay_s * SAMPLE_RATE)))
    return (config.gain * np.concatenate([delay, reflections])).astype(np.float32)


class SimulatedRoom:
    """A loudspeaker with a queue, and a microphone that hears it through the room."""

    def __init__(self, config: RoomConfig | None = None) -> None:
        self.config = config or RoomConfig()
        self.response = impulse_response(self.config)
        self._history = np.zeros(len(self.response) - 1, np.float32)  # played, newest last
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._queued = 0
        self._rng = np.random.default_rng(self.config.seed + 1)

    @property
    def speaking(self) -> bool:
        """True while the loudspeaker has audio queued."""
        return self._queued > 0

    def speak(self, samples: np.ndarray) -> None:
        """Queue 16 kHz mono audio on the loudspeaker."""
        if len(samples):
            self._queue.append(np.asarray(samples, np.float32))
            self._queued += len(samples)

    def silence_speaker(self) -> float:
        """Drop the queued audio (a player's flush on barge-in); returns the seconds dropped."""
        dropped = self._queued / SAMPLE_RATE
        self._queue.clear()
        self._queued = 0
        return dropped

    def step(self, count: int, voice: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Advance `count` samples: returns (microphone, played) audio of this step."""
        played = self._play(count)
        both = np.concatenate([self._history, played])
        echo = np.convolve(both, self.response, mode="valid").astype(np.float32)
        self._history = both[len(both) - len(self._history):]
        mic = echo + self._rng.normal(0.0, self.config.noise, count).astype(np.float32)
        if voice is not None:
            mic[:len(voice)] += voice[:count]
        return np.clip(mic, -1.0, 1.0), played

    def _play(self, count: int) -> np.ndarray:
        played = np.zeros(count, np.float32)
        filled = 0
        while filled < count and self._queue:
            head = self._queue[0]
            take = min(count - filled, len(head))
            played[filled:filled + take] = head[:take]
            filled += take
            self._queued -= take
            if take == len(head):
                self._queue.popleft()
            else:
                self._queue[0] = head[take:]
        return played
