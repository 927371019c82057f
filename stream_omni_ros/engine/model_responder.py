"""The Responder backed by Stream-Omni: speech tokenizer -> generator -> streaming vocoder.

A thin adapter: the model and vocoder packages do the work; this maps engine requests onto
GenerationRequests and generator events onto responder outputs. Partial transcripts reuse one
prepared turn whose caches follow the growing utterance, so the final answer starts from an
already prefilled prompt, image included when the turn keeps the frame it was prepared with.
"""
from __future__ import annotations

import dataclasses
import gc
from typing import Iterator

import numpy as np
import torch

from stream_omni_ros.engine.responder import (AudioPiece, Done, HistoryTurn, ResponderOutput,
                                              TextPiece, Transcript, TurnOptions,
                                              TurnRequest)
from stream_omni_ros.model.events import AsrTranscript, GenerationEnd, SpeechUnits, TextDelta
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.prepared import PreparedTurn
from stream_omni_ros.model.request import GenerationConfig, GenerationRequest
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer
from stream_omni_ros.model.tokens import DEFAULT_SYSTEM_PROMPT, ChatMessage
from stream_omni_ros.model.unit_stream import UnitStream, UnitWindowConfig
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder
from stream_omni_ros.vocoder.streaming import StreamingConfig, StreamingSynthesizer


def history_to_messages(history: tuple[HistoryTurn, ...]) -> tuple[ChatMessage, ...]:
    """Engine history -> alternating user/assistant ChatMessages."""
    messages: list[ChatMessage] = []
    for turn in history:
        messages += [ChatMessage("user", turn.user), ChatMessage("assistant", turn.assistant)]
    return tuple(messages)


class StreamOmniResponder:
    """Answers turns with a StreamOmniGenerator; speaks through a CosyVoiceVocoder if given."""

    def __init__(self, generator: StreamOmniGenerator, speech_tokenizer: SpeechTokenizer,
                 vocoder: CosyVoiceVocoder | None = None,
                 generation: GenerationConfig = GenerationConfig(),
                 streaming: StreamingConfig = StreamingConfig(),
                 unit_windows: UnitWindowConfig = UnitWindowConfig()) -> None:
        self.generator = generator
        self.speech_tokenizer = speech_tokenizer
        # Partial and final transcripts of one utterance share its already tokenized windows.
        self.unit_stream = UnitStream(speech_tokenizer, unit_windows)
        self.vocoder = vocoder
        self.generation = generation
        self.streaming = streaming
        self._prepared: PreparedTurn | None = None

    def _config(self, system_prompt: str, options: TurnOptions = TurnOptions()
                ) -> GenerationConfig:
        overrides = {name: getattr(options, name)
                     for name in ("temperature", "top_p", "max_new_tokens", "max_new_units")
                     if getattr(options, name) is not None}
        return dataclasses.replace(self.generation, **overrides,
                                   system_prompt=system_prompt or DEFAULT_SYSTEM_PROMPT)

    def _speech_in_kind(self) -> str:
        return "speech_to_speech" if self.vocoder is not None else "speech_to_text"

    def prepare(self, history: tuple[HistoryTurn, ...], system_prompt: str,
                image: np.ndarray | None = None) -> None:
        """Prefill system prompt, history, user header and image for the coming speech turn."""
        self.reset()  # a new utterance begins
        request = GenerationRequest(self._speech_in_kind(), images=() if image is None else
                                    (image,), history=history_to_messages(history),
                                    config=self._config(system_prompt))
        self._prepared = self.generator.prepare(request)

    def transcribe_partial(self, audio: np.ndarray) -> str:
        """Units of the speech so far through the prepared turn's bottom stack and CTC head."""
        if self._prepared is None:
            self.prepare((), "")
        units = self.unit_stream.units(audio)
        return self._prepared.feed_units([int(u) for u in units])

    def count_tokens(self, text: str) -> int:
        """Text tokens of a history message."""
        return len(self.generator.tokenizer.encode(text, add_special_tokens=False))

    def reset(self) -> None:
        """Free the prepared turn's caches and forget the utterance's units."""
        if self._prepared is not None and not self._prepared.used:
            self._prepared.release()
        self._prepared = None
        self.unit_stream.reset()

    def close(self) -> None:
        """Drop the prepared turn, model, speech tokenizer and vocoder; empty the CUDA cache."""
        self.reset()
        self.generator = self.speech_tokenizer = self.vocoder = self.unit_stream = None
        gc.collect()  # the weights go now, so that the cache below can return their memory
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()

    def begin_turn(self, request: TurnRequest) -> Iterator[ResponderOutput]:
        """Generate the answer; text and audio pieces interleave as the model produces them."""
        speak = request.speak and self.vocoder is not None
        if request.audio is not None:
            kind = "speech_to_speech" if speak else "speech_to_text"
            units = [int(u) for u in self.unit_stream.units(request.audio)]
            self.unit_stream.reset()  # the utterance is answered; the next one starts afresh
            content = {"units": units}
        else:
            kind = "text_to_speech" if speak else "text_to_text"
            content = {"text": request.text}
        images = () if request.image is None else (request.image,)
        config = self._config(request.system_prompt, request.options)
        gen_request = GenerationRequest(kind, images=images, config=config,
                                        history=history_to_messages(request.history), **content)
        prepared = self._take_prepared(gen_request)
        events = self.generator.generate(gen_request, prepared)
        synthesizer = StreamingSynthesizer(self.vocoder, self.streaming) if speak else None
        return self._outputs(events, synthesizer)

    def _take_prepared(self, gen_request: GenerationRequest) -> PreparedTurn | None:
        """The prepared turn if it was built for exactly this request's prompt head."""
        prepared, self._prepared = self._prepared, None
        usable = prepared is not None and prepared.serves(gen_request)
        if prepared is not None and not usable:
            prepared.release()
        return prepared if usable else None

    def _outputs(self, events, synthesizer: StreamingSynthesizer | None
                 ) -> Iterator[ResponderOutput]:
        rate = self.vocoder.sample_rate if self.vocoder is not None else 0
        try:
            for event in events:
                if isinstance(event, AsrTranscript):
                    yield Transcript(event.text)
                elif isinstance(event, TextDelta):
                    yield TextPiece(event.delta, event.text)
                elif isinstance(event, SpeechUnits) and synthesizer is not None:
                    for pcm in synthesizer.push(event.units):
                        yield AudioPiece(pcm, rate)
                elif isinstance(event, GenerationEnd):
                    for pcm in synthesizer.flush() if synthesizer is not None else []:
                        yield AudioPiece(pcm, rate)
                    yield Done(event.reason, event.n_text_tokens)
        finally:
            events.close()
