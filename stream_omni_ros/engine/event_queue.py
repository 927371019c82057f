"""One ordered, bounded event queue with purge (drop unplayed audio) and optional callback."""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

from stream_omni_ros.engine.events import EngineEvent


class EventQueue:
    """Thread-safe FIFO of engine events; a full queue drops its oldest events."""

    def __init__(self, max_pending: int) -> None:
        self._events: collections.deque[EngineEvent] = collections.deque()
        self._max_pending = max_pending
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, event: EngineEvent) -> None:
        """Append an event (never blocks)."""
        with self._cond:
            if len(self._events) >= self._max_pending:
                self._events.popleft()
                self.dropped += 1
            self._events.append(event)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> EngineEvent | None:
        """Next event, or None after timeout (or once closed and empty)."""
        with self._cond:
            self._cond.wait_for(lambda: self._events or self._closed, timeout)
            return self._events.popleft() if self._events else None

    def purge(self, predicate: Callable[[EngineEvent], bool]) -> list[EngineEvent]:
        """Remove and return the undelivered events that match predicate."""
        with self._cond:
            removed = [e for e in self._events if predicate(e)]
            if removed:
                self._events = collections.deque(e for e in self._events if not predicate(e))
            return removed

    def close(self) -> None:
        """Wake every reader; get() returns None once the remaining events are taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> Iterator[EngineEvent]:
        while (event := self.get()) is not None:
            yield event

    def __len__(self) -> int:
        with self._cond:
            return len(self._events)


@dataclass
class CallbackErrors:
    """Failures of the event callback: how many, and the last few as short text (bounded)."""

    keep: int = 8
    max_chars: int = 300
    count: int = 0
    recent: collections.deque = field(default_factory=collections.deque)

    def add(self, error: Exception) -> None:
        """Count a failure and keep its description, dropping the oldest kept one if full."""
        self.count += 1
        self.recent.append(f"{type(error).__name__}: {error}"[:self.max_chars])
        while len(self.recent) > self.keep:
            self.recent.popleft()


def start_dispatcher(queue: EventQueue, callback: Callable[[EngineEvent], None],
                     on_error: Callable[[Exception], None]) -> threading.Thread:
    """Deliver queued events to callback on a thread of their own, in order."""
    def run() -> None:
        for event in queue:
            try:
                callback(event)
            except Exception as error:  # a faulty consumer must not stop delivery
                on_error(error)

    thread = threading.Thread(target=run, name="stream-omni-events", daemon=True)
    thread.start()
    return thread
