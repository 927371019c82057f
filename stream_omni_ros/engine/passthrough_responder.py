"""A pass-through Responder: the model's output shape (text pieces, audio chunks) at no cost.

Used on both sides of the ROS-overhead measurement (omni_node runs it with
`responder:=passthrough`), so that the difference between the node graph and direct engine calls
is the ROS cost alone.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from stream_omni_ros.engine.responder import (AudioPiece, Done, HistoryTurn, ResponderOutput,
                                              TextPiece, Transcript, TurnRequest)

OUTPUT_RATE = 22050
FIRST_CHUNK_S = 0.6  # the streaming vocoder's first chunk (15 units)
CHUNK_S = 1.0


class PassThroughResponder:
    """Answers every turn with text_tokens words and units/25 s of silence, instantly."""

    def __init__(self, text_tokens: int, units: int) -> None:
        self.text_tokens = text_tokens
        total = int(units / 25 * OUTPUT_RATE)
        first = min(total, int(FIRST_CHUNK_S * OUTPUT_RATE))
        step = int(CHUNK_S * OUTPUT_RATE)
        bounds = [0, first] + list(range(first + step, total, step)) + [total]
        silence = np.zeros(total, np.float32)
        self.chunks = [silence[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]

    def transcribe_partial(self, audio: np.ndarray) -> str:
        """No recognition: the length of the speech heard."""
        return f"{len(audio)} samples"

    def prepare(self, history: tuple[HistoryTurn, ...], system_prompt: str,
                image: np.ndarray | None = None) -> None:
        """Nothing to prefill."""

    def count_tokens(self, text: str) -> int:
        """Words stand in for tokens."""
        return len(text.split())

    def reset(self) -> None:
        """No state."""

    def close(self) -> None:
        """Nothing to free."""

    def begin_turn(self, request: TurnRequest) -> Iterator[ResponderOutput]:
        """Transcript, then text pieces interleaved evenly with the audio chunks, then Done."""
        if request.audio is not None:
            yield Transcript(self.transcribe_partial(request.audio))
        text, per_chunk = "", max(1, self.text_tokens // len(self.chunks))
        for index in range(self.text_tokens):
            delta = f" w{index}"
            text += delta
            yield TextPiece(delta, text)
            chunk = index // per_chunk
            if index % per_chunk == per_chunk - 1 and chunk < len(self.chunks):
                yield AudioPiece(self.chunks[chunk], OUTPUT_RATE)
        for chunk in self.chunks[self.text_tokens // per_chunk:]:
            yield AudioPiece(chunk, OUTPUT_RATE)
        yield Done("max_new_tokens", self.text_tokens)
