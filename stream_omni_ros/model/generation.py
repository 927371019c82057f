"""Streaming generation for the four inference types.

doc/model.md §1.3, §5.4, §5.5, §7.4, §7.5.

Text-out modes run an ordinary decode loop; speech-out modes run the simultaneous policy of
doc/model.md §7.4: the LLM leads by 3 speakable tokens, each unit step cross-attends to the last
5 of them, and a new non-blank CTC label of the newest unit (trigger rule) advances the LLM by one
token.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import torch

from stream_omni_ros.errors import InputError
from stream_omni_ros.model.checkpoint import LoadedStreamOmni
from stream_omni_ros.model.compiled import CompiledDecodeConfig, StaticDecoder
from stream_omni_ros.model.events import (END_MAX_TOKENS, END_MAX_UNITS, END_TEXT_EOS,
                                          END_UNIT_EOS, GenerationEnd, GenerationEvent,
                                          SpeechUnits, TextDelta, AsrTranscript)
from stream_omni_ros.model.prepared import PreparedTurn
from stream_omni_ros.model.request import (SPEECH_IN, SPEECH_OUT, GenerationConfig,
                                           GenerationRequest, validate_request)
from stream_omni_ros.model.tokens import (PromptBuilder, SpecialIds, TextStream, is_trigger,
                                          speakable_table)

TEXT_LEAD = 3  # speakable text tokens generated before the first unit (doc/model.md §7.4)
TEXT_WINDOW = 5  # speakable text tokens each unit step cross-attends to


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

    def __init__(self, device: torch.device, stop_ids: frozenset[int],
                 unit_mask: torch.Tensor):
        self.device = device
        self.stop_ids = stop_ids  # the request's, decided once (empty: fixed lengths)
        self.unit_mask = unit_mask  # unit-head ids allowed when the config masks units
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

        `prepared` must serve the request (`PreparedTurn.serves`). Closing the returned
        generator cancels the request and frees its caches.
        """
        validate_request(request)
        unit_ids = []  # the request's units as token ids: range-checked here, once
        if request.inference_type in SPEECH_IN:
            unit_ids = PromptBuilder(self.tokenizer, self.special).unit_ids(request.units)
        if prepared is not None and not prepared.serves(request):
            raise InputError(f"prepared turn for {prepared.request.inference_type} (used="
                             f"{prepared.used}) cannot serve a {request.inference_type} request "
                             "(a prepared turn serves one request of its type, config, history "
                             "and images)")
        return self._run(request, prepared, unit_ids)

    def _run(self, request: GenerationRequest, prepared: PreparedTurn | None,
             unit_ids: list[int]) -> Iterator[GenerationEvent]:
        content_len = len(unit_ids) if request.inference_type in SPEECH_IN else len(
            self.tokenizer.encode(request.text, add_special_tokens=False))
        turn = prepared or PreparedTurn(self, request, content_len)
        turn.used, self.active = True, turn
        try:
            if request.inference_type in SPEECH_IN:  # the transcript comes before the LLM runs
                turn.feed_unit_ids(unit_ids, run_llm=False)
                yield AsrTranscript(turn.transcript, tuple(turn.labels))
            x = turn.finish(request)
            rng = torch.Generator(device=self.model.device).manual_seed(request.config.seed)
            # The stop set, decided once: ignore_stop_ids (benchmarks) gives fixed lengths.
            stops = frozenset(() if request.config.ignore_stop_ids else self.special.stop_ids)
            loop = self._speech_loop if request.inference_type in SPEECH_OUT else self._text_loop
            yield from loop(turn, x, request.config, rng, stops)
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
                   rng: torch.Generator, stops: frozenset[int]) -> Iterator[GenerationEvent]:
        """t2t / s2t: plain autoregressive text with the request's sampling settings."""
        stream, reason, n = TextStream(self.tokenizer), END_MAX_TOKENS, 0
        while n < cfg.max_new_tokens:
            token_id, token = self._text_step(turn, x, cfg.temperature, cfg.top_p, rng)
            if token_id in stops:
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
            state.text_done = state.n_text >= cfg.max_new_tokens or token_id in state.stop_ids
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
            logits = logits.masked_fill(~state.unit_mask, float("-inf"))
        u = select_token(logits, cfg.unit_temperature, cfg.unit_top_p, rng)
        # The bottom stack reads u before the host knows it: the CTC label comes in the same sync.
        h_u = self.stages.bottom_forward(u.view(1, 1), turn.caches.bottom)
        label = self.model.ctc_logits(h_u)[0, -1].argmax(-1)
        u_id, label_id = torch.stack([u.view(()), label]).tolist()
        return u_id, label_id, h_u

    def _speech_loop(self, turn: PreparedTurn, x: torch.Tensor, cfg: GenerationConfig,
                     rng: torch.Generator, stops: frozenset[int]) -> Iterator[GenerationEvent]:
        """t2s / s2s: text leads by 3 speakable tokens; CTC triggers advance it.

        The simultaneous policy of doc/model.md §7.4.
        """
        state = _SpeechOutState(self.model.device, stops,
                                self._unit_masks[cfg.ignore_stop_ids])
        state.trigger, stream = self.special.blank, TextStream(self.tokenizer)
        yield from self._deltas(stream, self._advance_text(turn, state, cfg, rng, x), stops)
        h_b = turn.speech_hidden()
        if h_b.shape[1] > 1:  # earlier positions need no cross-attention (doc/model.md §7.2)
            self.model.top_forward(h_b[:, :-1], turn.caches.top)
        u, label, h_u = self._unit_step(turn, state, h_b[:, -1:], cfg, rng)
        n_steps, n_units, reason = 0, 0, END_MAX_UNITS
        while n_steps < cfg.max_new_units:
            if u in stops:
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
                yield from self._deltas(stream, self._advance_text(turn, state, cfg, rng), stops)
            u, label, h_u = self._unit_step(turn, state, h_u, cfg, rng)
        yield from _flush(stream)
        yield GenerationEnd(reason, len(stream.ids), n_units)

    def _deltas(self, stream: TextStream, token_ids: list[int],
                stops: frozenset[int]) -> Iterator[TextDelta]:
        """Deltas of new text ids; the request's stop ids are not text."""
        for token_id in token_ids:
            if token_id not in stops:
                yield from _delta(stream, token_id)


def _delta(stream: TextStream, token_id: int) -> Iterator[TextDelta]:
    delta = stream.push(token_id)
    if delta:
        yield TextDelta(delta, stream.text, token_id)


def _flush(stream: TextStream) -> Iterator[TextDelta]:
    delta = stream.flush()
    if delta:
        yield TextDelta(delta, stream.text, stream.ids[-1])
