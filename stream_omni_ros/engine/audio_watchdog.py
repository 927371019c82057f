"""Microphone watchdog: an utterance whose audio stopped arriving is abandoned, never kept open.

A microphone driver or publisher that dies mid-utterance sends no end of speech, so without a
watchdog the engine would wait in user_speaking for ever. The half-heard utterance is abandoned
rather than answered: a truncated question could be answered wrongly, and a user whose audio
was lost repeats it.
"""
from __future__ import annotations


class AudioWatchdog:
    """Remembers when microphone audio last arrived (engine clock seconds).

    On the engine clock a paused simulation pauses the watchdog too; a clock that steps back
    restarts the wait instead of reading a negative silence.
    """

    def __init__(self) -> None:
        self._last: float | None = None

    def heard(self, now: float) -> None:
        """Audio arrived, or an utterance opened, at `now`."""
        self._last = now

    def silent_for(self, now: float) -> float:
        """Seconds since audio last arrived (0 before any, or after a clock step back)."""
        if self._last is None or now < self._last:
            self._last = now
        return now - self._last
