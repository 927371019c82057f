"""Prompt ids, special ids, the speakable table and the two CTC rules (ASR collapse, trigger)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

import torch

from stream_omni_ros.errors import CheckpointError, InputError

IMAGE_MARKER = -200
DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)
ROLES = ("user", "assistant")

# Characters kept by the speakable filter besides word characters and whitespace
# (doc/model.md §7.4).
_NOT_SPEAKABLE = re.compile(r"[^\w\s。，',.、“”\"！？!?]")
_STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")


class _VocabConfig(Protocol):
    vocab_size: int


@dataclass(frozen=True)
class SpecialIds:
    """Ids the prompt and the speech loop need, read from the tokenizer (never hard-coded)."""

    bos: int
    eot: int
    blank: int
    start_header: int
    end_header: int
    first_unit: int
    num_units: int
    stop_ids: tuple[int, ...]

    @classmethod
    def from_tokenizer(cls, tok, config: _VocabConfig | None = None) -> "SpecialIds":
        """Look up the Llama-3 specials and the contiguous `<Audio_n>` block in `tok`."""
        ids = {name: _token_id(tok, name) for name in (
            "<|begin_of_text|>", "<|eot_id|>", "<|reserved_special_token_0|>",
            "<|start_header_id|>", "<|end_header_id|>")}
        first_unit = _token_id(tok, "<Audio_0>")
        num_units = len(tok) - first_unit
        last = tok.convert_tokens_to_ids(f"<Audio_{num_units - 1}>")
        if last != first_unit + num_units - 1:
            raise CheckpointError(
                f"tokenizer: <Audio_{num_units - 1}> has id {last}, expected "
                f"{first_unit + num_units - 1} (unit tokens must be contiguous at the end)")
        if config is not None and config.vocab_size < len(tok):
            raise CheckpointError(
                f"config vocab_size {config.vocab_size} < len(tokenizer) {len(tok)}")
        # <|eom_id|> exists only from Llama-3.1 on; the checkpoint's eos ids are added anyway.
        stops = [tok.convert_tokens_to_ids(name) for name in _STOP_TOKENS]
        stops = [int(i) for i in stops if i is not None and i != tok.unk_token_id]
        stops += [int(i) for i in _config_eos_ids(config) if int(i) not in stops]
        return cls(bos=ids["<|begin_of_text|>"], eot=ids["<|eot_id|>"],
                   blank=ids["<|reserved_special_token_0|>"],
                   start_header=ids["<|start_header_id|>"], end_header=ids["<|end_header_id|>"],
                   first_unit=first_unit, num_units=num_units, stop_ids=tuple(stops))

    def unit_to_id(self, unit: int) -> int:
        """Token id of speech unit `unit` (first_unit + unit)."""
        return self.first_unit + unit

    def id_to_unit(self, token_id: int) -> int | None:
        """Speech unit of a token id, or None when the id is not a unit token."""
        unit = token_id - self.first_unit
        return unit if 0 <= unit < self.num_units else None


def _token_id(tok, token: str) -> int:
    token_id = tok.convert_tokens_to_ids(token)
    if token_id is None or token_id == tok.unk_token_id:
        raise CheckpointError(f"tokenizer has no token {token!r}; expected a Llama-3 tokenizer "
                              "with <Audio_n> unit tokens")
    return int(token_id)


def _config_eos_ids(config) -> list[int]:
    for field in ("eos_token_ids", "eos_token_id"):
        value = getattr(config, field, None)
        if value is not None:
            return list(value) if isinstance(value, (list, tuple)) else [value]
    return []


@dataclass(frozen=True)
class ChatMessage:
    """One earlier message of the conversation (role 'user' or 'assistant', plain text)."""

    role: str
    text: str


@dataclass(frozen=True)
class PromptIds:
    """LLM-side prompt ids (image markers included) and the span [start, end) of the content."""

    ids: tuple[int, ...]
    content_span: tuple[int, int]
    n_images: int

    def speech_side(self) -> "PromptIds":
        """The same prompt with image markers removed, as the bottom/top stacks see it."""
        start, end = self.content_span
        before = sum(1 for i in self.ids[:start] if i == IMAGE_MARKER)
        inside = sum(1 for i in self.ids[start:end] if i == IMAGE_MARKER)
        ids = tuple(i for i in self.ids if i != IMAGE_MARKER)
        return PromptIds(ids, (start - before, end - before - inside), 0)

    @property
    def marker_positions(self) -> tuple[int, ...]:
        """Indices in the speech-side sequence where each image's tokens are spliced in."""
        positions, removed = [], 0
        for index, token_id in enumerate(self.ids):
            if token_id == IMAGE_MARKER:
                positions.append(index - removed)
                removed += 1
        return tuple(positions)


class PromptBuilder:
    """Builds doc/model.md §6.5 prompt ids: two BOS as the original, one if `duplicate_bos` is
    False."""

    def __init__(self, tok, special: SpecialIds,
                 system_prompt: str = DEFAULT_SYSTEM_PROMPT, duplicate_bos: bool = True):
        self._tok = tok
        self._special = special
        self._system_prompt = system_prompt
        self._duplicate_bos = duplicate_bos
        self._newline = self._encode("\n")

    def _encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def text_ids(self, text: str) -> list[int]:
        """Ids of user text (no BOS)."""
        return self._encode(text)

    def _message(self, role: str, content: list[int]) -> list[int]:
        s = self._special
        return [s.start_header, *self._encode(role), s.end_header, *self._encode("\n\n"),
                *content, s.eot]

    def prefix(self, history: Sequence[ChatMessage] = ()) -> list[int]:
        """BOS, system message and history: every id before the current user header."""
        s = self._special
        ids = [s.bos, s.bos] if self._duplicate_bos else [s.bos]
        ids += self._message("system", self._encode(self._system_prompt))
        for message in history:
            if message.role not in ROLES:
                raise InputError(f"history message role {message.role!r}; expected one of "
                                 f"{ROLES}")
            ids += self._message(message.role, self._encode(message.text))
        return ids

    def user_header(self) -> list[int]:
        """Ids that open the user message (header and the blank line)."""
        return self._message("user", [])[:-1]

    def assistant_header(self) -> list[int]:
        """Ids that close the user message and open the assistant's answer."""
        return [self._special.eot, *self._message("assistant", [])[:-1]]

    def image_lead(self, n_images: int) -> list[int]:
        """The `<image>\\n` lead of the user content, one per image."""
        return [IMAGE_MARKER, *self._newline] * n_images

    def unit_ids(self, units: Iterable[int]) -> list[int]:
        """Token ids of speech units, checked against the unit vocabulary."""
        s = self._special
        ids = []
        for index, unit in enumerate(units):
            unit = int(unit)
            if not 0 <= unit < s.num_units:
                raise InputError(f"unit {unit} at index {index} out of range; expected "
                                 f"0..{s.num_units - 1}")
            ids.append(s.first_unit + unit)
        return ids

    def build(self, *, text: str | None = None, units: Sequence[int] | None = None,
              n_images: int = 0, history: Sequence[ChatMessage] = ()) -> PromptIds:
        """Full prompt for a text question or a unit sequence (exactly one of them)."""
        if (text is None) == (units is None):
            raise InputError("prompt needs exactly one of text or units")
        content = self._encode(text) if text is not None else self.unit_ids(units)
        head = self.prefix(history) + self.user_header() + self.image_lead(n_images)
        ids = head + content + self.assistant_header()
        return PromptIds(tuple(ids), (len(head), len(head) + len(content)), n_images)

    def speech_prefill(self) -> PromptIds:
        """t2s speech-side prompt: the template with a single space as user content."""
        return self.build(text=" ")


def speakable_table(tok, size: int | None = None) -> torch.Tensor:
    """BoolTensor[size]: whether each token id counts as speakable (doc/model.md §7.4)."""
    size = len(tok) if size is None else size
    pieces = tok.batch_decode([[i] for i in range(min(size, len(tok)))],
                              skip_special_tokens=False, clean_up_tokenization_spaces=False)
    table = torch.zeros(size, dtype=torch.bool)
    for token_id, piece in enumerate(pieces):
        table[token_id] = is_speakable(piece)
    return table


def is_speakable(piece: str) -> bool:
    """Whether decoded text carries something to say (word characters or sentence marks)."""
    kept = _NOT_SPEAKABLE.sub("", piece)
    return bool(kept.replace("\n", " ").replace("\t", " ").replace("\r", " ").strip())


def ctc_collapse(labels: Iterable[int], blank: int) -> list[int]:
    """Greedy CTC (ASR rule): drop blanks and labels equal to the previous raw label."""
    kept, previous = [], None
    for label in labels:
        if label != blank and label != previous:
            kept.append(label)
        previous = label
    return kept


def is_trigger(label: int, last_trigger: int, blank: int) -> bool:
    """Trigger rule: a non-blank label differing from the last *triggering* label."""
    return label != blank and label != last_trigger


def trigger_labels(labels: Iterable[int], blank: int) -> list[int]:
    """Labels that fire the trigger rule in order, starting from the blank state."""
    fired, state = [], blank
    for label in labels:
        if is_trigger(label, state, blank):
            fired.append(label)
            state = label
    return fired


class TextStream:
    """Cumulative detokenizer: decodes all ids so far and returns only the stable new suffix."""

    def __init__(self, tok):
        self._tok = tok
        self.ids: list[int] = []
        self.text = ""

    def _decode(self) -> str:
        # No clean-up of tokenization spaces: it could rewrite text that was already emitted.
        return self._tok.decode(self.ids, skip_special_tokens=True,
                                clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        """Add one id; return the new stable text (trailing U+FFFD are held back)."""
        self.ids.append(token_id)
        # An incomplete UTF-8 sequence decodes to U+FFFD until its last byte arrives.
        return self._take(self._decode().rstrip("\ufffd"))

    def flush(self) -> str:
        """Return whatever is still held back (end of the response)."""
        return self._take(self._decode())

    def _take(self, decoded: str) -> str:
        if len(decoded) <= len(self.text) or not decoded.startswith(self.text):
            return ""
        delta = decoded[len(self.text):]
        self.text = decoded
        return delta
