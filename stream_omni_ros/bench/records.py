"""Typed per-turn measurements and their p50/p95 summaries."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import numpy as np

# Streams of the timeline: name -> (first, last) arrival, seconds after the endpoint.
Timeline = Mapping[str, tuple[float, float]]
LATENCY_FIELDS = ("endpoint_to_transcript_s", "endpoint_to_first_text_s",
                  "endpoint_to_first_audio_s", "total_s")
RATE_FIELDS = ("text_tokens_per_s", "real_time_factor", "audio_s")


@dataclass(frozen=True)
class TurnRecord:
    """What one turn of one path (engine, reference, ros) took, from the endpoint on."""

    path: str
    turn: int
    endpoint_to_transcript_s: float | None
    endpoint_to_first_text_s: float | None
    endpoint_to_first_audio_s: float | None
    total_s: float
    text_tokens: int
    text_tokens_per_s: float | None
    audio_s: float
    real_time_factor: float | None  # compute wall time / seconds of audio
    timeline: Timeline = field(default_factory=dict)

    def to_json(self) -> dict:
        """Plain JSON-serialisable dict."""
        row = asdict(self)
        row["timeline"] = {name: list(span) for name, span in self.timeline.items()}
        return row


@dataclass(frozen=True)
class Percentiles:
    """Median and 95th percentile of one figure over turns (None when no turn had it)."""

    p50: float | None
    p95: float | None
    n: int


def percentiles(values: Iterable[float | None]) -> Percentiles:
    """p50 / p95 of the values that exist (linear interpolation between samples)."""
    present = [v for v in values if v is not None]
    if not present:
        return Percentiles(None, None, 0)
    p50, p95 = np.percentile(np.asarray(present, dtype=np.float64), [50, 95])
    return Percentiles(float(p50), float(p95), len(present))


def summarize(records: list[TurnRecord]) -> dict[str, Percentiles]:
    """p50/p95 of every latency and rate field over the records of one path."""
    return {name: percentiles(getattr(r, name) for r in records)
            for name in LATENCY_FIELDS + RATE_FIELDS}


def since(moments: list[float], origin: float) -> tuple[float, float] | None:
    """(first, last) of moments relative to origin, or None without moments."""
    if not moments:
        return None
    return min(moments) - origin, max(moments) - origin
