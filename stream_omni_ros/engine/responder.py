"""The seam between the conversation engine and whatever answers a turn (the model, or a stand-in).

The engine calls a Responder from its single worker thread only, so implementations need no locks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Union

import numpy as np


@dataclass(frozen=True)
class HistoryTurn:
    """One finished exchange of the conversation."""

    user: str
    assistant: str


@dataclass(frozen=True)
class TurnRequest:
    """Everything a responder needs to answer one turn (exactly one of audio or text)."""

    audio: np.ndarray | None  # [N] float32, 16 kHz mono
    text: str | None
    image: np.ndarray | None  # [H, W, 3] uint8 RGB
    history: tuple[HistoryTurn, ...]
    system_prompt: str  # empty: the model's default
    speak: bool


@dataclass(frozen=True)
class Transcript:
    """What the user said (speech turns), available before the response starts."""

    text: str


@dataclass(frozen=True)
class TextPiece:
    """New stable response text and the whole response so far."""

    delta: str
    text: str


@dataclass(frozen=True)
class AudioPiece:
    """Synthesised response audio, float32 mono PCM."""

    pcm: np.ndarray
    sample_rate: int


@dataclass(frozen=True)
class Done:
    """Last output of a turn: why it stopped and how many text tokens were generated."""

    reason: str
    text_tokens: int


ResponderOutput = Union[Transcript, TextPiece, AudioPiece, Done]


class Responder(Protocol):
    """What the engine needs from the model side. Cancellation = closing the iterator."""

    def transcribe_partial(self, audio: np.ndarray) -> str:
        """Transcript of 16 kHz mono speech heard so far (called while the user talks)."""
        ...

    def prepare(self, history: tuple[HistoryTurn, ...], system_prompt: str) -> None:
        """Prefill the part of the next prompt that is already known (system + history)."""
        ...

    def begin_turn(self, request: TurnRequest) -> Iterator[ResponderOutput]:
        """Answer one turn, yielding outputs in order and ending with Done."""
        ...

    def count_tokens(self, text: str) -> int:
        """Prompt tokens a history text occupies (to bound the history)."""
        ...

    def reset(self) -> None:
        """Drop any cached conversation state (prefilled prefixes)."""
        ...
