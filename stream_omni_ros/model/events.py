"""Typed events yielded by the streaming generator, in the order a consumer receives them."""
from __future__ import annotations

from dataclasses import dataclass

# GenerationEnd.reason values.
END_TEXT_EOS = "text_eos"
END_MAX_TOKENS = "max_new_tokens"
END_UNIT_EOS = "unit_eos"
END_MAX_UNITS = "max_new_units"


@dataclass(frozen=True)
class AsrTranscript:
    """ASR transcript of the input units (speech input modes), right after the prefill.

    The engine turns it into its own `engine.events.TranscriptFinal` of a turn.
    """

    text: str
    label_ids: tuple[int, ...]


@dataclass(frozen=True)
class TextDelta:
    """New stable text of the response; `text` is the whole response decoded so far."""

    delta: str
    text: str
    token_id: int


@dataclass(frozen=True)
class SpeechUnits:
    """Speech units (0..num_units-1) of the response; `start_index` of the first one."""

    units: tuple[int, ...]
    start_index: int


@dataclass(frozen=True)
class GenerationEnd:
    """Last event: why generation stopped and how much was produced."""

    reason: str
    n_text_tokens: int
    n_units: int


GenerationEvent = AsrTranscript | TextDelta | SpeechUnits | GenerationEnd
