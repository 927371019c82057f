"""One generation request: its inference type, content, images, history and decoding settings.

The request and its checks live here, below the prepared turn and the generator that serve it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.model.tokens import DEFAULT_SYSTEM_PROMPT, ChatMessage

INFERENCE_TYPES = ("text_to_text", "text_to_speech", "speech_to_text", "speech_to_speech")
SPEECH_IN = ("speech_to_text", "speech_to_speech")
SPEECH_OUT = ("text_to_speech", "speech_to_speech")


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


def validate_request(request: GenerationRequest, *, needs_content: bool = True) -> None:
    """Raise InputError naming what is wrong with a request."""
    kind = request.inference_type
    if kind not in INFERENCE_TYPES:
        raise InputError(f"unknown inference_type {kind!r}; expected one of {INFERENCE_TYPES}")
    for index, image in enumerate(request.images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8
                and image.ndim == 3 and image.shape[2] == 3 and min(image.shape[:2]) > 0):
            raise InputError(f"images[{index}]: expected an RGB uint8 array [h, w, 3], got "
                             f"{type(image).__name__} {getattr(image, 'shape', '')} "
                             f"{getattr(image, 'dtype', '')}")
    if not needs_content:
        return
    if kind in SPEECH_IN and (request.units is None or len(request.units) == 0):
        raise InputError(f"{kind} needs a non-empty units sequence, got {request.units!r}")
    if kind not in SPEECH_IN and not request.text:
        raise InputError(f"{kind} needs a non-empty text, got {request.text!r}")
