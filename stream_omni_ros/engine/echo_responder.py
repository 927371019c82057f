"""A deterministic Responder without a model: answers by echoing, speaks a tone per word.

For running the engine and the nodes end to end on machines without the checkpoint (simulation,
CI, demos of the turn-taking); it computes its audio for real and obeys cancellation like the
model-backed responder.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from stream_omni_ros.engine.responder import (AudioPiece, Done, HistoryTurn, ResponderOutput,
                                              TextPiece, Transcript, TurnRequest)
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

ECHO_SAMPLE_RATE = 22050
HEARD_SAMPLE_RATE = 16000  # TurnRequest.audio: the engine's 16 kHz mono timeline


def describe_audio(audio: np.ndarray) -> str:
    """A stand-in transcript that tells how much speech was heard."""
    return f"({len(audio) / MODEL_SAMPLE_RATE:.1f} s of speech)"


class EchoResponder:
    """Replies "You said: <transcript>", one text piece (a "token") and one tone per word.

    Honours the turn's speak and max_new_tokens; sampling options have nothing to sample.
    """

    def __init__(self, seconds_per_word: float = 0.25, sample_rate: int = ECHO_SAMPLE_RATE,
                 replay_heard: bool = False):
        self.seconds_per_word = seconds_per_word
        self.sample_rate = sample_rate
        # a parrot: a spoken turn is answered with the speech heard (a voice, unlike the tones,
        # that a VAD takes for speech: what a room's echo test needs)
        self.replay_heard = replay_heard
        self.prepared: tuple[tuple[HistoryTurn, ...], str, np.ndarray | None] | None = None
        self.responses_started = 0

    def transcribe_partial(self, audio: np.ndarray) -> str:
        """Duration of the speech so far, as text."""
        return describe_audio(audio)

    def prepare(self, history: tuple[HistoryTurn, ...], system_prompt: str,
                image: np.ndarray | None = None) -> None:
        """Remember what was prepared (observable by tests and demos)."""
        self.prepared = (history, system_prompt, image)

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words stand in for tokens."""
        return len(text.split())

    def reset(self) -> None:
        """Forget the prepared prefix."""
        self.prepared = None

    def close(self) -> None:
        """Nothing to free beyond the prepared prefix."""
        self.reset()

    def begin_turn(self, request: TurnRequest) -> Iterator[ResponderOutput]:
        """Echo the request word by word, with a tone of rising pitch per word."""
        self.responses_started += 1
        transcript = request.text if request.text is not None else describe_audio(request.audio)
        if request.audio is not None:
            yield Transcript(transcript)
        words = ["You", "said:", *transcript.split()]
        if request.image is not None:
            height, width = request.image.shape[:2]
            words += ["and", "showed", f"{width}x{height}."]
        if request.history:
            words += [f"(turn {len(request.history) + 1})"]
        limit = request.options.max_new_tokens
        reason = "text_eos"
        if limit is not None and len(words) > limit:
            words, reason = words[:limit], "max_new_tokens"
        text = ""
        replay = None
        if self.replay_heard and request.audio is not None and len(request.audio):
            replay = np.array_split(request.audio.astype(np.float32), len(words))
        for index, word in enumerate(words):
            delta = word if index == 0 else " " + word
            text += delta
            yield TextPiece(delta, text)
            if request.speak and replay is not None:
                yield AudioPiece(replay[index], HEARD_SAMPLE_RATE)
            elif request.speak:
                yield AudioPiece(self._tone(index), self.sample_rate)
        yield Done(reason, len(words))

    def _tone(self, index: int) -> np.ndarray:
        n = int(self.seconds_per_word * self.sample_rate)
        hz = 200.0 + 20.0 * index
        fade = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / 200.0)
        return (0.3 * fade * np.sin(2 * np.pi * hz * np.arange(n) / self.sample_rate)).astype(
            np.float32)
