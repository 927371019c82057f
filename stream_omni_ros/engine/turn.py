"""Bookkeeping of one running turn: response text, audio index and latency metrics."""
from __future__ import annotations

import time

from stream_omni_ros.engine.events import TurnMetrics


class TurnTracker:
    """Accumulates what a turn produced and when, relative to the endpoint."""

    def __init__(self, turn_id: int, endpoint_time: float, transcript: str = "") -> None:
        self.turn_id = turn_id
        self.endpoint_time = endpoint_time
        self.started = time.monotonic()
        self.transcript = transcript
        self.response = ""
        self.chunk_index = 0
        self.audio_s = 0.0
        self.sample_rate = 0
        self.text_tokens = 0
        self._transcript_at: float | None = None
        self._first_text_at: float | None = None
        self._first_audio_at: float | None = None
        self._last_text_at: float | None = None

    def on_transcript(self, text: str) -> None:
        """Record the final transcript."""
        self.transcript = text
        self._transcript_at = time.monotonic()

    def on_text(self, text: str) -> None:
        """Record the response text so far."""
        now = time.monotonic()
        self._first_text_at = self._first_text_at or now
        self._last_text_at = now
        self.response = text

    def on_audio(self, seconds: float, sample_rate: int) -> int:
        """Record an audio chunk; return its index."""
        self._first_audio_at = self._first_audio_at or time.monotonic()
        self.sample_rate = sample_rate
        self.audio_s += seconds
        self.chunk_index += 1
        return self.chunk_index - 1

    def metrics(self) -> TurnMetrics:
        """Latencies from the endpoint and throughput of this turn."""
        wall = time.monotonic() - self.started
        text_wall = None
        if self._first_text_at is not None and self._last_text_at > self.started:
            text_wall = self._last_text_at - self.started
        return TurnMetrics(
            endpoint_to_transcript_s=self._since_endpoint(self._transcript_at),
            endpoint_to_first_text_s=self._since_endpoint(self._first_text_at),
            endpoint_to_first_audio_s=self._since_endpoint(self._first_audio_at),
            text_tokens=self.text_tokens,
            tokens_per_s=self.text_tokens / text_wall if text_wall and self.text_tokens else None,
            audio_s=self.audio_s,
            real_time_factor=wall / self.audio_s if self.audio_s > 0 else None,
        )

    def _since_endpoint(self, moment: float | None) -> float | None:
        return None if moment is None else moment - self.endpoint_time
