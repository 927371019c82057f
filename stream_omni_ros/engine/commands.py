"""Commands the engine hands to its model worker (besides the listener's utterance commands)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextTurn:
    """A typed request to answer."""

    turn_id: int
    text: str
    stamp: float
    request_time: float  # time.monotonic() of the request (the "endpoint" of a text turn)


@dataclass(frozen=True)
class Abandoned:
    """A turn dropped while the user was still talking."""

    turn_id: int
    reason: str


@dataclass(frozen=True)
class InterruptPlayback:
    """Drop the unplayed audio of a turn whose generation may already be over."""

    turn_id: int | None
    reason: str


@dataclass(frozen=True)
class ResetHistory:
    """Forget the conversation."""


@dataclass(frozen=True)
class StopWorker:
    """End the worker loop."""
