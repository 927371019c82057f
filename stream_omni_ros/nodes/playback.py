"""Plays queued PCM on a PortAudio output stream in callback mode, with a jitter buffer.

PortAudio pulls audio from the queue in its own thread and gets silence when the queue is
empty, so the device runs continuously: no start thresholds or blocking writes into a sound
server's large buffer (PulseAudio's ALSA plugin buffers seconds and drops them on close). The
device therefore holds only a few periods, and flush() (clearing the queue) silences the speaker
within about one device latency. The period is left to PortAudio: a fixed 20 ms period made the
PulseAudio ALSA plugin pull audio several times faster than real time and lose it.

Opening a stream is slow on some servers (PulseAudio's ALSA plugin starts pulling audio only
1-2 s after the open), hence `initial_fmt`: open the stream for the expected format at start-up
rather than with the first chunk. A helper thread reopens the stream when the rate or channel
count of the next chunk differs, after the old audio has played out.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pyaudio

PERIOD_S = 0.02  # how often the helper thread looks for a format change
UNSPECIFIED = pyaudio.paFramesPerBufferUnspecified
MAX_DRAIN_S = 0.5  # longest wait for the device to play out before a format change

# on_played(frames int16 [n, channels], sample_rate, seconds until the first reaches the DAC,
# still_playing): called from the device's thread for every period that carried queued audio
PlayedCallback = Callable[[np.ndarray, int, float, bool], None]


@dataclass
class Chunk:
    """int16 frames [frames, channels] at one rate, with how many were already played."""

    sample_rate: int
    frames: np.ndarray
    played: int = 0

    @property
    def fmt(self) -> tuple[int, int]:
        """(sample_rate, channels) the output stream must have to play this chunk."""
        return self.sample_rate, self.frames.shape[1]

    @property
    def remaining_s(self) -> float:
        """Seconds not played yet."""
        return (self.frames.shape[0] - self.played) / self.sample_rate


class PlaybackQueue:
    """PCM pushed with put() waits here for a speaker that pulls periods; flush() empties it.

    The jitter buffer runs on `clock` (seconds): the device's steady time for a sound card, the
    node clock for the simulated speaker.
    """

    def __init__(self, jitter_buffer_s: float, max_queue_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.jitter_buffer_s, self.max_queue_s, self.clock = jitter_buffer_s, max_queue_s, clock
        self.chunks: collections.deque[Chunk] = collections.deque()
        self.queued_s = 0.0
        self.waiting_since: float | None = None
        self.end_of_stream = False
        self.playing = False
        self.closed = False
        self.dropped_s = 0.0
        self.cond = threading.Condition()

    def put(self, samples: np.ndarray, sample_rate: int, end_of_stream: bool) -> None:
        """Queue float PCM [frames, channels]; end_of_stream lets a short tail start at once."""
        pcm16 = (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).round().astype(np.int16)
        chunk = Chunk(sample_rate, pcm16)
        with self.cond:
            if self.queued_s + chunk.remaining_s > self.max_queue_s:
                self.dropped_s += chunk.remaining_s  # far behind: drop the newest audio
            elif pcm16.shape[0]:
                self.chunks.append(chunk)
                self.queued_s += chunk.remaining_s
            self.end_of_stream = self.end_of_stream or end_of_stream
            if self.waiting_since is None:
                self.waiting_since = self.clock()
            self.cond.notify()

    def flush(self) -> float:
        """Drop all queued audio; return the seconds dropped."""
        with self.cond:
            dropped = self.queued_s
            self.chunks.clear()
            self.queued_s, self.waiting_since = 0.0, None
            self.end_of_stream = self.playing = False
        return dropped

    def head_fmt(self) -> tuple[int, int] | None:
        """(sample_rate, channels) of the next queued audio, None when nothing is queued."""
        with self.cond:
            return self.chunks[0].fmt if self.chunks else None

    def pull(self, out: np.ndarray, fmt: tuple[int, int]) -> tuple[int, bool]:
        """Copy queued frames of `fmt` into `out` [frames, channels] (left as it is where none
        are due); returns (frames copied, still playing)."""
        filled = 0
        with self.cond:
            if self.chunks and self._ready():
                self.playing = True
                filled = self._fill(out, fmt)
            return filled, self.playing

    def drop_format(self, fmt: tuple[int, int]) -> None:
        """Drop the queued audio at the head in `fmt` (no device can play it)."""
        with self.cond:
            while self.chunks and self.chunks[0].fmt == fmt:
                self.queued_s -= self.chunks.popleft().remaining_s

    def _ready(self) -> bool:
        """Jitter buffer: start once enough is queued, the stream ended, or we waited enough."""
        if self.playing:
            return True
        waited = self.clock() - (self.waiting_since or self.clock())
        return (self.queued_s >= self.jitter_buffer_s or self.end_of_stream
                or waited >= self.jitter_buffer_s)

    def _fill(self, out: np.ndarray, fmt: tuple[int, int]) -> int:
        """Copy queued frames of the stream's format into `out` [frames, channels]; count."""
        filled = 0
        while filled < out.shape[0] and self.chunks and self.chunks[0].fmt == fmt:
            head = self.chunks[0]
            take = min(out.shape[0] - filled, head.frames.shape[0] - head.played)
            out[filled:filled + take] = head.frames[head.played:head.played + take]
            head.played += take
            filled += take
            self.queued_s -= take / head.sample_rate
            if head.played == head.frames.shape[0]:
                self.chunks.popleft()
        if not self.chunks:  # underrun or done: buffer again before the next start
            self.playing, self.waiting_since, self.end_of_stream = False, None, False
        return filled


class Playback:
    """Plays a PlaybackQueue on a PortAudio output stream; put() and flush() go to the queue."""

    def __init__(self, audio: pyaudio.PyAudio, device_index: int | None,
                 queue: PlaybackQueue, logger, initial_fmt: tuple[int, int] | None = None,
                 on_played: PlayedCallback | None = None) -> None:
        self.audio, self.device_index, self.logger = audio, device_index, logger
        self.queue, self.on_played, self.initial_fmt = queue, on_played, initial_fmt
        self.stream: pyaudio.Stream | None = None
        self.stream_fmt: tuple[int, int] | None = None
        self.thread = threading.Thread(target=self._manage_stream, name="playback", daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop the helper thread and close the stream."""
        with self.queue.cond:
            self.queue.closed = True
            self.queue.cond.notify()
        self.thread.join(timeout=5.0)

    def _on_output(self, _in_data, frame_count: int, time_info, _status):
        out = np.zeros((frame_count, self.stream_fmt[1]), np.int16)  # silence by default
        filled, playing = self.queue.pull(out, self.stream_fmt)
        if filled and self.on_played is not None:
            self.on_played(out[:filled], self.stream_fmt[0], _dac_delay(time_info), playing)
        return out.tobytes(), pyaudio.paContinue

    def _manage_stream(self) -> None:
        """Open the stream for the next chunk's format; reopen after the old audio played."""
        if self.initial_fmt is not None:
            self._open_stream(self.initial_fmt)
        queue = self.queue
        while True:
            with queue.cond:
                while not queue.closed and not (queue.chunks and
                                                queue.chunks[0].fmt != self.stream_fmt):
                    queue.cond.wait(timeout=PERIOD_S)
                if queue.closed:
                    break
                fmt = queue.chunks[0].fmt
            if self.stream is not None:
                time.sleep(min(self.stream.get_output_latency(), MAX_DRAIN_S))
            self._close_stream()
            self._open_stream(fmt)
        self._close_stream()

    def _open_stream(self, fmt: tuple[int, int]) -> None:
        rate, channels = fmt
        self.stream_fmt = fmt  # set first: the callback starts inside open()
        try:
            self.stream = self.audio.open(format=pyaudio.paInt16, channels=channels, rate=rate,
                                          output=True, output_device_index=self.device_index,
                                          frames_per_buffer=UNSPECIFIED,
                                          stream_callback=self._on_output)
        except OSError as err:
            self.logger.error(f"cannot open output at {rate} Hz x {channels} ch: {err}; "
                              "dropping audio in that format")
            self.queue.drop_format(fmt)

    def _close_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
        self.stream, self.stream_fmt = None, None


def _dac_delay(time_info: dict) -> float:
    """Seconds from now until the period's first frame reaches the converter (0 if unknown)."""
    dac, now = time_info.get("output_buffer_dac_time", 0.0), time_info.get("current_time", 0.0)
    return min(max(0.0, dac - now), 1.0) if dac and now else 0.0
