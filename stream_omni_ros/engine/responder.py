"""The seam between the conversation engine and whatever answers a turn (the model, or a stand-in).

The engine calls a Responder from its single worker thread only, so implementations need no locks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Union

import numpy as np

from stream_omni_ros.errors import InputError, InputReason


@dataclass(frozen=True)
class HistoryTurn:
    """One finished exchange of the conversation."""

    user: str
    assistant: str


@dataclass(frozen=True)
class TurnOptions:
    """Per-turn overrides of the configured behaviour; None keeps the configured default."""

    speak: bool | None = None
    use_camera: bool | None = None
    temperature: float | None = None  # 0 = greedy
    top_p: float | None = None
    max_new_tokens: int | None = None  # text tokens, spoken answers included
    max_new_units: int | None = None  # speech units of a spoken answer (25 a second)

    def __post_init__(self) -> None:
        problems = []
        if self.temperature is not None and not (math.isfinite(self.temperature)
                                                 and self.temperature >= 0):
            problems.append(f"temperature={self.temperature!r} (expected >= 0)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            problems.append(f"top_p={self.top_p!r} (expected 0 < top_p <= 1)")
        for name in ("max_new_tokens", "max_new_units"):
            value = getattr(self, name)
            if value is not None and value < 1:
                problems.append(f"{name}={value!r} (expected >= 1)")
        if problems:
            raise InputError(f"TurnOptions: {', '.join(problems)}", InputReason.OUT_OF_RANGE)


@dataclass(frozen=True)
class TurnRequest:
    """Everything a responder needs to answer one turn (exactly one of audio or text)."""

    audio: np.ndarray | None  # [N] float32, 16 kHz mono
    text: str | None
    image: np.ndarray | None  # [H, W, 3] uint8 RGB
    history: tuple[HistoryTurn, ...]
    system_prompt: str  # empty: the model's default
    speak: bool  # options.speak resolved against the configured default
    options: TurnOptions = field(default_factory=TurnOptions)


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

    def prepare(self, history: tuple[HistoryTurn, ...], system_prompt: str,
                image: np.ndarray | None = None) -> None:
        """Prefill the part of the next prompt already known: system, history, the image."""
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

    def close(self) -> None:
        """Free what the responder holds (model weights, device caches); it answers no more."""
        ...
