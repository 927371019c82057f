"""State shared by the model worker and the threads that feed the engine."""
from __future__ import annotations

import threading
import time
from typing import Callable

from stream_omni_ros.engine.commands import InterruptPlayback
from stream_omni_ros.engine.events import STATE_IDLE, STATE_SPEAKING, STATE_THINKING


class WorkerHandle:
    """State shared by the worker and the feeding threads (one lock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # the speaker's time: emitted audio plays in real time on it
        self._lock = threading.Lock()
        self._responding: set[int] = set()
        self._playback_end = 0.0  # clock time at which the emitted audio ends playing
        self._cancelled_through = 0
        self._cancel_reason = ""
        self._cancelled_one: dict[int, str] = {}  # single queued or running turns, by id
        self._last_spoken: int | None = None
        self._speaking_turn: int | None = None

    def responding(self) -> bool:
        """A turn is queued or running, or its audio is still playing."""
        with self._lock:
            return bool(self._responding) or self._clock() < self._playback_end

    def state(self) -> str:
        """thinking | speaking | idle, as seen by the worker."""
        with self._lock:
            if self._speaking_turn is not None or self._clock() < self._playback_end:
                return STATE_SPEAKING
            return STATE_THINKING if self._responding else STATE_IDLE

    def begin_responding(self, turn_id: int) -> None:
        """Mark a turn as queued for an answer."""
        with self._lock:
            self._responding.add(turn_id)

    def end_responding(self, turn_id: int) -> None:
        """Mark a turn as answered or dropped."""
        with self._lock:
            self._responding.discard(turn_id)
            self._cancelled_one.pop(turn_id, None)
            if self._speaking_turn == turn_id:
                self._speaking_turn = None

    def cancel_through(self, turn_id: int, reason: str) -> None:
        """Cancel every turn whose id is <= turn_id."""
        with self._lock:
            if turn_id > self._cancelled_through:
                self._cancelled_through, self._cancel_reason = turn_id, reason

    def cancel_one(self, turn_id: int, reason: str) -> None:
        """Cancel this turn only, if it is queued or running (else there is nothing to stop)."""
        with self._lock:
            if turn_id in self._responding:  # forgotten again by end_responding: bounded
                self._cancelled_one[turn_id] = reason

    def cancel_reason(self, turn_id: int) -> str | None:
        """Why this turn is cancelled, or None when it is not."""
        with self._lock:
            if turn_id <= self._cancelled_through:
                return self._cancel_reason
            return self._cancelled_one.get(turn_id)

    def playback_interrupt(self, reason: str) -> InterruptPlayback:
        """Command that drops the last spoken turn's unplayed audio."""
        with self._lock:
            return InterruptPlayback(self._last_spoken, reason)

    def note_audio(self, turn_id: int, seconds: float) -> None:
        """Audio of turn_id was emitted; playback is assumed to run in real time after it."""
        with self._lock:
            self._playback_end = max(self._playback_end, self._clock()) + seconds
            self._last_spoken = self._speaking_turn = turn_id

    def stop_playback(self, turn_id: int | None) -> float:
        """Forget the playback estimate; return the seconds that were still unplayed."""
        with self._lock:
            if turn_id is None or turn_id != self._last_spoken:
                return 0.0
            unplayed = max(0.0, self._playback_end - self._clock())
            self._playback_end = 0.0
            return unplayed
