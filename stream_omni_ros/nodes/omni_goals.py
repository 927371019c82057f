"""Admission and order of `~/converse` goals: one runs at a time, the others wait their turn.

Only the running goal holds an executor thread (its execute callback follows its turn), so a
burst of goals cannot starve the node's timers, services, lifecycle transitions or the action
server itself. Every admitted goal is executed exactly once: in its turn, at once when its
cancel is accepted while it waits, or at once when the queue closes (deactivate, cleanup).
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Protocol

MAX_GOALS = 32  # admitted goals waiting or running; more are rejected with a reason


class GoalHandle(Protocol):
    """What the queue needs of an rclpy ServerGoalHandle."""

    def execute(self) -> None:
        """Schedule the goal's execute callback."""


@dataclass(frozen=True)
class Refusal:
    """Why a goal was not admitted: a counter key and a message for the log."""

    key: str
    message: str


class GoalQueue:
    """Goals in arrival order; see the module docstring. Thread-safe."""

    def __init__(self, max_goals: int = MAX_GOALS) -> None:
        self._max_goals = max_goals
        self._lock = threading.Condition()
        self._waiting: deque[GoalHandle] = deque()
        self._withdrawn: set[int] = set()  # ids of waiting goals whose cancel was accepted
        self._running: GoalHandle | None = None
        self._count = 0  # admitted and not finished
        self._closed: str | None = None  # why goals are refused and ended now; None: open

    def admit(self) -> Refusal | None:
        """Reserve a place for a new goal; None when admitted, else why it is refused."""
        with self._lock:
            if self._closed is not None:
                return Refusal("inactive", f"{self._closed}; expected an active omni_node")
            if self._count >= self._max_goals:
                return Refusal("queue_full", f"{self._count} goals are waiting or running; "
                                             f"expected at most {self._max_goals}")
            self._count += 1
            return None

    def accepted(self, handle: GoalHandle) -> None:
        """Queue an admitted goal (rclpy's handle_accepted_callback)."""
        with self._lock:
            self._waiting.append(handle)
        self._start_next()

    def withdraw(self, handle: GoalHandle) -> bool:
        """Take a waiting goal out of the line (its cancel was accepted); execute it now."""
        with self._lock:
            if handle not in self._waiting:
                return False
            self._waiting.remove(handle)
            self._withdrawn.add(id(handle))
        handle.execute()
        return True

    def was_withdrawn(self, handle: GoalHandle) -> bool:
        """Whether this goal left the line by its cancel (asked once, by its execute callback)."""
        with self._lock:
            if id(handle) in self._withdrawn:
                self._withdrawn.discard(id(handle))
                return True
            return False

    def finished(self, handle: GoalHandle) -> None:
        """A goal's execute callback is returning: free its place and start the next goal."""
        with self._lock:
            if self._running is handle:
                self._running = None
            self._count -= 1
            self._lock.notify_all()
        self._start_next()

    def close(self, reason: str) -> None:
        """Refuse new goals; the waiting ones are executed now (they end with `reason`)."""
        with self._lock:
            self._closed = reason
        self._start_next()

    def reopen(self) -> None:
        """Admit goals again (on activate)."""
        with self._lock:
            self._closed = None

    def closed_reason(self) -> str | None:
        """Why goals must end now (the queue is closed); None while open."""
        with self._lock:
            return self._closed

    def wait_empty(self, timeout_s: float) -> bool:
        """Wait until every admitted goal finished; False after the timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._count == 0, timeout_s)

    def _start_next(self) -> None:
        with self._lock:
            if self._closed is not None:
                starting, self._waiting = list(self._waiting), deque()
            elif self._running is None and self._waiting:
                self._running = self._waiting.popleft()
                starting = [self._running]
            else:
                starting = []
        for handle in starting:
            handle.execute()
