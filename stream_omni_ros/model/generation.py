"""Streaming generation for the four inference types (doc/model.md §1.3, §5.4, §5.5, §7.4, §7.5).

Text-out modes run an ordinary decode loop; speech-out modes run the simultaneous policy of
doc/model.md §7.4: the LLM leads by 3 speakable tokens, each unit step cross-attends to the last
5 of them, and a new non-blank CTC label of the newest unit (trigger rule) advances the LLM by one
token.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.model.checkpoint import LoadedStreamOmni
from stream_omni_ros.model.compiled import CompiledDecodeConfig, StaticDecoder
from stream_omni_ros.model.events import (END_MAX_TOKENS, END_MAX_UNITS, END_TEXT_EOS,
                                          END_UNIT_EOS, GenerationEnd, GenerationEvent,
                                          SpeechUnits, TextDelta, AsrTranscript)
from stream_omni_ros.model.prepared import (INFERENCE_TYPES, SPEECH_IN, SPEECH_OUT,
                                            PreparedTurn, splice_images, validate_request)
from stream_omni_ros.model.tokens import (DEFAULT_SYSTEM_PROMPT, ChatMessage, PromptBuilder,
                                          SpecialIds, TextStream, is_trigger, speakable_table)

# Re-exported: callers import the request types and the prepared turn from here.
__all__ = ["INFERENCE_TYPES", "SPEECH_IN", "SPEECH_OUT", "TEXT_LEAD", "TEXT_WINDOW",
           "CompiledDecodeConfig", "GenerationConfig", "GenerationRequest", "PreparedTurn",
           "StreamOmniGenerator", "select_token", "splice_images", "text_window",
           "validate_request"]

TEXT_LEAD = 3  # speakable text tokens generated before the first unit (doc/model.md §7.4)
TEXT_WINDOW = 5  # speakable text tokens each unit step cross-attends to


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings of one request; greedy defaults reproduce the original's outputs.

    Two limits, one per output stream:

    * ``max_new_tokens``: generated text tokens (the stop id is not counted). In text_to_text and
      speech_to_text this is the original's ``max_new_tokens``. In text_to_speech and
      speech_to_speech it only caps the text stream (the original has no such cap there: its
      text stops at ``<|eot_id|>`` or with the units).
    * ``max_new_units``: unit steps of text_to_speech and speech_to_speech, 25 per second of
      speech. The original's ``max_new_tokens`` counts generate steps, which in these modes are
      unit steps: ``max_new_units=N`` with a ``max_new_tokens`` that does not bind reproduces its
      ``max_new_tokens=N`` (after a lead of 3, text advances by at most one speakable token per
      unit step). A step whose id is not a speech unit counts but yields no unit.

    ``duplicate_bos`` (default True) starts every prompt with two ``<|begin_of_text|>``, as every
    inference path of the original does (the template's literal BOS plus the tokenizer's).
    Against recorded outputs of the original code on a small random checkpoint, two BOS matched
    every prompt id, transcript, text id, unit and stop reason of all four modes with and without
    an image (logits within 1e-6); one BOS changed the answer in 6 of those 8 cases. False gives
    the single-BOS Llama-3 prompt, for comparison only.
    """

    max_new_tokens: int = 512  # text tokens (all modes)
    max_new_units: int = 2048  # unit steps of speech-out modes (the original's max_new_tokens)
    temperature: float = 0.0  # text, text-out modes only (speech-out modes decode text greedily)
    top_p: float = 1.0
    unit_temperature: float = 0.0
    unit_top_p: float = 1.0
    seed: int = 0
    mask_units: bool = False  # restrict the unit head to units and stop ids
    max_text_steps_per_trigger: int = 64  # bounds a run of non-speakable text tokens
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    duplicate_bos: bool = True  # the original's two BOS tokens (see above)
    ignore_stop_ids: bool = False  # fixed response lengths (benchmarks)

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "max_new_units", "max_text_steps_per_trigger"):
            if getattr(self, name) < 1:
                raise ConfigError(f"GenerationConfig.{name}={getattr(self, name)}; expected >= 1")
        for name in ("temperature", "unit_temperature"):
            if getattr(self, name) < 0:
                raise ConfigError(f"GenerationConfig.{name}={getattr(self, name)}; expected >= 0")
        for name in ("top_p", "unit_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"GenerationConfig.{name}={getattr(self, name)}; "
                                  "expected 0 < top_p <= 1")


@dataclass(frozen=True)
class GenerationRequest:
    """One turn: inference type, text or units, optional RGB images, earlier messages."""

    inference_type: str
    text: str | None = None
    units: Sequence[int] | None = None
    images: Sequence[np.ndarray] = ()
    history: Sequence[ChatMessage] = ()
    config: GenerationConfig = field(default_factory=GenerationConfig)


def select_token(logits: torch.Tensor, temperature: float, top_p: float,
                 rng: torch.Generator) -> torch.Tensor:
    """Pick one id from logits [V] on the device: argmax, or nucleus sampling. -> LongTensor[1]."""
    if temperature <= 0:
        return logits.argmax(-1, keepdim=True)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1:
        return torch.multinomial(probs, 1, generator=rng)
    sorted_probs, order = probs.sort(descending=True)
    # Keep the smallest head of the distribution whose mass reaches top_p.
    outside = sorted_probs.cumsum(-1) - sorted_probs > top_p
    sorted_probs = sorted_probs.masked_fill(outside, 0.0)
    return order[torch.multinomial(sorted_probs, 1, generator=rng)]


class _SpeechOutState:
    """Per-request state of the simultaneous policy (never stored on the model)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.speakable_ids: list[int] = []  # `spk` of doc/model.md §7.4
        self.pending: torch.Tensor | None = None  # last text id, not yet fed to the LLM
        self.trigger = -1  # set to the blank id by the generator
        self.n_text = 0
        self.text_done = False
        self.window: tuple[torch.Tensor, torch.Tensor] | None = None

    def refresh_window(self) -> None:
        """Window tensors: the last <= 5 speakable ids and their indices in the speakable list."""
        ids, positions = text_window(self.speakable_ids)
        self.window = None if not ids else (
            torch.tensor([ids], device=self.device), torch.tensor(positions, device=self.device))


def text_window(speakable_ids: Sequence[int]) -> tuple[list[int], list[int]]:
    """The last <= 5 speakable ids and their indices in the speakable list (doc/model.md §7.2)."""
    n = len(speakable_ids)
    W = min(TEXT_WINDOW, n)
    return list(speakable_ids[n - W:]), list(range(n - W, n))


class StreamOmniGenerator:
    """Runs requests on a loaded Stream-Omni model, one at a time, as typed event streams.

    `compiled` (off by default) routes single-position steps through model/compiled.py.
    """

    def __init__(self, loaded: LoadedStreamOmni, max_input_len: int = 2048,
                 compiled: CompiledDecodeConfig | None = None):
        self.model = loaded.model
        # Decode steps run here: the model itself, or static-shape (compiled) steps around it.
        self.stages = self.model if compiled is None else StaticDecoder(self.model, compiled)
        self.tokenizer = loaded.tokenizer
        self.special = SpecialIds.from_tokenizer(loaded.tokenizer, loaded.config)
        self.max_input_len = max_input_len
        vt = self.model.lm_head.out_features
        self.speakable = speakable_table(loaded.tokenizer, vt).tolist()
        units_only = torch.zeros(self.model.audio_lm_head.out_features, dtype=torch.bool)
        units_only[self.special.first_unit:self.special.first_unit + self.special.num_units] = 1
        units_or_stop = units_only.clone()
        units_or_stop[list(self.special.stop_ids)] = True
        # With ignore_stop_ids the stop ids are masked too, so every unit step yields a unit.
        self._unit_masks = {False: units_or_stop.to(self.model.device),
                            True: units_only.to(self.model.device)}
        self.active: PreparedTurn | None = None  # the turn of the running generate(), if any

    def ids_tensor(self, ids: Sequence[int]) -> torch.Tensor:
        """LongTensor [1, T] on the model's device."""
        return torch.tensor([list(ids)], dtype=torch.long, device=self.model.device)

    def prepare(self, request: GenerationRequest,
                max_content_len: int | None = None) -> PreparedTurn:
        """Prefill system prompt, history, user header and images before the content is known.

        The caches are sized for `max_content_len` content positions (default: max_input_len,
        reduced to what max_position_embeddings leaves).
        """
        return PreparedTurn(self, request, max_content_len)

    def generate(self, request: GenerationRequest,
                 prepared: PreparedTurn | None = None) -> Iterator[GenerationEvent]:
        """Yield AsrTranscript?, TextDelta*, SpeechUnits*, GenerationEnd for one request.

        With `prepared`, its history and images are the ones used. Closing the returned
        generator cancels the request and frees its caches.
        """
        validate_request(request)
        if request.inference_type in SPEECH_IN:
            PromptBuilder(self.tokenizer, self.special).unit_ids(request.units)  # range check
        if prepared is not None and (prepared.used or prepared.caches is None or
                                     prepared.request.inference_type != request.inference_type
                                     or prepared.request.config != request.config):
            raise InputError(f"prepared turn for {prepared.request.inference_type} (used="
                             f"{prepared.used}) cannot serve a {request.inference_type} request "
                             "(a prepared turn serves one request of its type and config)")
        return self._run(request, prepared)

    def _run(self, request: GenerationRequest,
             prepared: PreparedTurn | None) -> Iterator[GenerationEvent]:
        content_len = len(request.units) if request.inference_type in SPEECH_IN else len(
            self.tokenizer.encode(request.text, add_special_tokens=False))
        turn = prepared or PreparedTurn(self, request, content_len)
        turn.used, self.active = True, turn
        try:
            if request.inference_type in SPEECH_IN:  # the transcript comes before the LLM runs
                turn.feed_units(request.units, run_llm=False)
                yield AsrTranscript(turn.transcript, tuple(turn.labels))
            x = turn.finish(request)
            rng = torch.Generator(device=self.model.device).manual_seed(request.config.seed)
            loop = self._speech_loop if request.inference_type in SPEECH_OUT else self._text_loop
            yield from loop(turn, x, request.config, rng)
        finally:
            turn.release()
            if self.active is turn:
                self.active = None

    @torch.inference_mode()
    def _text_step(self, turn: PreparedTurn, x: torch.Tensor, temperature: float,
                   top_p: float, rng: torch.Generator) -> tuple[int, torch.Tensor]:
        """One LLM step over input embeddings [1, T, H]: the next text id (one host sync)."""
        h = self.stages.llm_forward(x, turn.caches.llm)
        logits = self.model.text_logits(h[:, -1:])[0, -1]  # [Vt]
        token = select_token(logits, temperature, top_p, rng)
        return int(token.item()), token.view(1, 1)

    def _text_loop(self, turn: PreparedTurn, x: torch.Tensor, cfg: GenerationConfig,
                   rng: torch.Generator) -> Iterator[GenerationEvent]:
        """t2t / s2t: plain autoregressive text with the request's sampling settings."""
        stream, reason, n = TextStream(self.tokenizer), END_MAX_TOKENS, 0
        while n < cfg.max_new_tokens:
            token_id, token = self._text_step(turn, x, cfg.temperature, cfg.top_p, rng)
            if token_id in self.special.stop_ids and not cfg.ignore_stop_ids:
                reason = END_TEXT_EOS
                break
            n += 1
            yield from _delta(stream, token_id)
            x = self.model.embed_text(token)
        yield from _flush(stream)
        yield GenerationEnd(reason, n, 0)

    def _advance_text(self, turn: PreparedTurn, state: _SpeechOutState, cfg: GenerationConfig,
                      rng: torch.Generator, x: torch.Tensor | None = None) -> list[int]:
        """Greedy LLM tokens until one more speakable token exists (LEAD at the start)."""
        spk, s = state.speakable_ids, self.special
        target = max(TEXT_LEAD, len(spk) + 1)
        if turn.request.inference_type == "text_to_speech" and spk and spk[-1] in (s.eot,
                                                                                   s.blank):
            target = len(spk)
        new_ids = []
        for _ in range(cfg.max_text_steps_per_trigger):
            if len(spk) >= target or state.text_done:
                break
            x = x if state.pending is None else self.model.embed_text(state.pending)
            token_id, state.pending = self._text_step(turn, x, 0.0, 1.0, rng)
            state.n_text += 1
            if self.speakable[token_id]:
                spk.append(token_id)
            state.text_done = state.n_text >= cfg.max_new_tokens or (
                token_id in s.stop_ids and not cfg.ignore_stop_ids)
            new_ids.append(token_id)
        state.refresh_window()
        return new_ids

    @torch.inference_mode()
    def _unit_step(self, turn: PreparedTurn, state: _SpeechOutState, h_b: torch.Tensor,
                   cfg: GenerationConfig, rng: torch.Generator) -> tuple[int, int, torch.Tensor]:
        """Top stack on h_b [1, T, H] -> next id u; bottom + CTC of u; one host sync for both."""
        window_ids, window_positions = state.window or (None, None)
        h_t = self.stages.top_forward(h_b, turn.caches.top, window_ids, window_positions)
        logits = self.model.unit_logits(h_t[:, -1:])[0, -1]  # [V]
        if cfg.mask_units:
            logits = logits.masked_fill(~self._unit_masks[cfg.ignore_stop_ids], float("-inf"))
        u = select_token(logits, cfg.unit_temperature, cfg.unit_top_p, rng)
        # The bottom stack reads u before the host knows it: the CTC label comes in the same sync.
        h_u = self.stages.bottom_forward(u.view(1, 1), turn.caches.bottom)
        label = self.model.ctc_logits(h_u)[0, -1].argmax(-1)
        u_id, label_id = torch.stack([u.view(()), label]).tolist()
        return u_id, label_id, h_u

    def _speech_loop(self, turn: PreparedTurn, x: torch.Tensor, cfg: GenerationConfig,
                     rng: torch.Generator) -> Iterator[GenerationEvent]:
        """t2s / s2s: text leads by 3 speakable tokens; CTC triggers advance it.

        The simultaneous policy of doc/model.md §7.4.
        """
        state, stream = _SpeechOutState(self.model.device), TextStream(self.tokenizer)
        state.trigger = self.special.blank
        yield from self._deltas(stream, self._advance_text(turn, state, cfg, rng, x), cfg)
        h_b = turn.speech_hidden()
        if h_b.shape[1] > 1:  # earlier positions need no cross-attention (doc/model.md §7.2)
            self.model.top_forward(h_b[:, :-1], turn.caches.top)
        u, label, h_u = self._unit_step(turn, state, h_b[:, -1:], cfg, rng)
        n_steps, n_units, reason = 0, 0, END_MAX_UNITS
        while n_steps < cfg.max_new_units:
            if u in self.special.stop_ids and not cfg.ignore_stop_ids:
                reason = END_UNIT_EOS
                break
            n_steps += 1
            unit = self.special.id_to_unit(u)
            if unit is not None:  # other ids are fed back but are not speech (doc/model.md §7.3)
                yield SpeechUnits((unit,), n_units)
                n_units += 1
            if n_steps == cfg.max_new_units:
                break
            if is_trigger(label, state.trigger, self.special.blank):
                state.trigger = label
                yield from self._deltas(stream, self._advance_text(turn, state, cfg, rng), cfg)
            u, label, h_u = self._unit_step(turn, state, h_u, cfg, rng)
        yield from _flush(stream)
        yield GenerationEnd(reason, len(stream.ids), n_units)

    def _deltas(self, stream: TextStream, token_ids: list[int],
                cfg: GenerationConfig) -> Iterator[TextDelta]:
        """Deltas of new text ids; stop ids are not text unless they are ignored."""
        for token_id in token_ids:
            if token_id not in self.special.stop_ids or cfg.ignore_stop_ids:
                yield from _delta(stream, token_id)


def _delta(stream: TextStream, token_id: int) -> Iterator[TextDelta]:
    delta = stream.push(token_id)
    if delta:
        yield TextDelta(delta, stream.text, token_id)


def _flush(stream: TextStream) -> Iterator[TextDelta]:
    delta = stream.flush()
    if delta:
        yield TextDelta(delta, stream.text, stream.ids[-1])
