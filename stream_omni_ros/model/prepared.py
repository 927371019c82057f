"""A turn's prompt prefilled before its content is known, and which requests it can serve.

The system prompt, history, user header and images are prefilled into the three KV caches ahead
of time; speech input is then fed incrementally (doc/model.md §5.4), so the transcript and most
of the LLM prefill are ready when the user stops speaking.
"""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch

from stream_omni_ros.errors import InputError
from stream_omni_ros.model.request import (SPEECH_IN, SPEECH_OUT, GenerationRequest,
                                           validate_request)
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM
from stream_omni_ros.model.tokens import (IMAGE_MARKER, PromptBuilder, PromptIds, SpecialIds,
                                          ctc_collapse)


class TurnRunner(Protocol):
    """What a prepared turn uses of the generator that runs it (StreamOmniGenerator)."""

    model: StreamOmniForCausalLM
    stages: Any  # the model, or static-shape decode steps around it (model/compiled.py)
    tokenizer: Any
    special: SpecialIds
    max_input_len: int

    def ids_tensor(self, ids: Sequence[int]) -> torch.Tensor:
        """LongTensor [1, T] on the model's device."""


class PreparedTurn:
    """One turn's prompt prefilled up to the user content; speech input is fed incrementally.

    Speech input: `feed_units` runs the bottom stack, CTC and the LLM over the units heard so
    far; units from the first changed index on are recomputed after truncating the caches.
    """

    def __init__(self, gen: TurnRunner, request: GenerationRequest,
                 content_len: int | None = None):
        validate_request(request, needs_content=False)
        self.request, self._gen, self.used = request, gen, False
        model, cfg = gen.model, request.config
        self.builder = PromptBuilder(gen.tokenizer, gen.special, cfg.system_prompt,
                                     cfg.duplicate_bos)
        b = self.builder
        head = b.prefix(request.history) + b.user_header() + b.image_lead(len(request.images))
        self._tail = b.assistant_header()
        images = [model.encode_image(rgb) for rgb in request.images]
        side = [i for i in head if i != IMAGE_MARKER]
        self._marker_positions = PromptIds(tuple(head), (0, 0), len(images)).marker_positions
        self.speech_prefix_len = len(side)
        self._allocate(len(side) + sum(len(x) for x in images), content_len)
        self.units: list[int] = []
        self.labels: list[int] = []
        self._llm_units = 0  # units whose soft embeddings the LLM cache holds
        self._prefill_head(side, images)
        self.llm_prefix_len = self.caches.llm.length

    def _allocate(self, llm_prefix: int, content_len: int | None) -> None:
        kind, cfg, gen = self.request.inference_type, self.request.config, self._gen
        if content_len is None:
            room = (gen.model.config.max_position_embeddings - llm_prefix - len(self._tail)
                    - cfg.max_new_tokens - 1)
            content_len = max(1, min(gen.max_input_len, room))
        llm_len = llm_prefix + content_len + len(self._tail) + cfg.max_new_tokens + 1
        if llm_len > gen.model.config.max_position_embeddings:
            raise InputError(f"prompt ({llm_prefix} + {content_len} content positions) plus "
                             f"max_new_tokens {cfg.max_new_tokens} exceeds "
                             f"max_position_embeddings {gen.model.config.max_position_embeddings}")
        speech_len = 1
        if kind in SPEECH_IN:
            speech_len = self.speech_prefix_len + content_len + len(self._tail)
        if kind == "text_to_speech":
            speech_len = len(self.builder.speech_prefill().ids)
        if kind in SPEECH_OUT:
            speech_len += cfg.max_new_units + 1
        self.caches = gen.stages.new_caches(llm_len, speech_len)  # shaped for its steps
        self.hidden = None
        if kind in SPEECH_IN or kind == "text_to_speech":
            H = gen.model.config.hidden_size
            self.hidden = torch.empty(1, speech_len, H, device=gen.model.device,
                                      dtype=gen.model.dtype)

    @torch.inference_mode()
    def _prefill_head(self, side: list[int], images: list[torch.Tensor]) -> None:
        model, kind = self._gen.model, self.request.inference_type
        ids = self._gen.ids_tensor(side)
        if kind in SPEECH_IN:
            h_b = model.bottom_forward(ids, self.caches.bottom)
            self.hidden[:, :h_b.shape[1]] = h_b
            x = model.soft_text_embeddings(model.ctc_logits(h_b))
        else:
            x = model.embed_text(ids)
        model.llm_forward(splice_images(x, self._marker_positions, images), self.caches.llm)
        if kind == "text_to_speech":
            template = self._gen.ids_tensor(self.builder.speech_prefill().ids)
            h_b = model.bottom_forward(template, self.caches.bottom)
            self.hidden[:, :h_b.shape[1]] = h_b

    def serves(self, request: GenerationRequest) -> bool:
        """True if this turn, still unused, was prepared for this request's prompt head.

        Same inference type and config (system prompt included), same history, the very same
        image arrays (by identity: comparing pixels would cost more than a prefill saves).
        """
        mine = self.request
        return (not self.used and self.caches is not None
                and mine.inference_type == request.inference_type
                and mine.config == request.config and tuple(mine.history) == tuple(request.history)
                and len(mine.images) == len(request.images)
                and all(a is b for a, b in zip(mine.images, request.images)))

    @property
    def transcript(self) -> str:
        """ASR transcript of the units fed so far (CTC collapse over the unit span only)."""
        kept = ctc_collapse(self.labels, self._gen.special.blank)
        return self._gen.tokenizer.decode(kept, skip_special_tokens=True).strip()

    @torch.inference_mode()
    def feed_units(self, units: Sequence[int], run_llm: bool = True) -> str:
        """Give all units heard so far (earlier ones may be revised); return the transcript.

        Units from the first changed index on are recomputed after truncating the caches;
        `run_llm=False` leaves the LLM prefill of the new units to `finish()`.
        """
        self._require_speech_in()
        return self.feed_unit_ids(self.builder.unit_ids(units), run_llm)

    @torch.inference_mode()
    def feed_unit_ids(self, ids: Sequence[int], run_llm: bool = True) -> str:
        """`feed_units` for unit token ids already range-checked by `PromptBuilder.unit_ids`."""
        self._require_speech_in()
        units = [i - self._gen.special.first_unit for i in ids]
        k = 0
        while k < min(len(units), len(self.units)) and units[k] == self.units[k]:
            k += 1
        if k < len(self.units) or k < len(units):
            self.caches.bottom.truncate(self.speech_prefix_len + k)
            self.labels = self.labels[:k] + self._bottom_in(ids[k:])
            self.units = [int(u) for u in units]
            self._llm_units = min(self._llm_units, k)
            self.caches.llm.truncate(self.llm_prefix_len + self._llm_units)
        if run_llm and self._llm_units < len(self.units):
            self._gen.model.llm_forward(self._soft_since_llm(), self.caches.llm)
            self._llm_units = len(self.units)
        return self.transcript

    def _require_speech_in(self) -> None:
        if self.request.inference_type not in SPEECH_IN:
            raise InputError(f"feed_units: {self.request.inference_type} takes no speech input")

    def _bottom_in(self, ids: Sequence[int]) -> list[int]:
        """Bottom stack + CTC over new speech-side ids (states kept); returns their labels."""
        if not ids:
            return []
        model, start = self._gen.model, self.caches.bottom.length
        h_b = model.bottom_forward(self._gen.ids_tensor(ids), self.caches.bottom)  # [1, T, H]
        self.hidden[:, start:start + len(ids)] = h_b
        return model.ctc_logits(h_b)[0].argmax(-1).tolist()

    def _soft_since_llm(self) -> torch.Tensor:
        """Soft text embeddings of the speech positions the LLM has not read yet [1, T, H]."""
        start = self.speech_prefix_len + self._llm_units
        h_b = self.hidden[:, start:self.caches.bottom.length]
        return self._gen.model.soft_text_embeddings(self._gen.model.ctc_logits(h_b))

    @torch.inference_mode()
    def finish(self, request: GenerationRequest) -> torch.Tensor:
        """Feed the rest of the content and return the LLM input not yet read.

        Speech input must have been fed in full (`feed_units`); text is fed here. The logits of
        the returned input start the answer.
        """
        if request.inference_type in SPEECH_IN:
            self._bottom_in(self._tail)
            return self._soft_since_llm()
        ids = self.builder.text_ids(request.text) + self._tail
        return self._gen.model.embed_text(self._gen.ids_tensor(ids))

    def speech_hidden(self) -> torch.Tensor:
        """Bottom-stack states of the whole speech-side prompt [1, Ls, H]."""
        return self.hidden[:, :self.caches.bottom.length]

    def release(self) -> None:
        """Free the caches (the turn cannot be used afterwards)."""
        self.caches = self.hidden = None


def splice_images(x: torch.Tensor, positions: Sequence[int],
                  images: Sequence[torch.Tensor]) -> torch.Tensor:
    """Insert image tokens [n_i, H] into x [1, L, H] before the given positions.

    See doc/model.md §4.5.
    """
    if not images:
        return x
    pieces, start = [], 0
    for position, tokens in zip(positions, images):
        pieces += [x[0, start:position], tokens.to(x.dtype)]
        start = position
    pieces.append(x[0, start:])
    return torch.cat(pieces)[None]  # [1, L + sum(n_i), H]

