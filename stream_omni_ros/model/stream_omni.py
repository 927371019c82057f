"""The Stream-Omni module tree; attribute paths equal the checkpoint's state-dict keys.

Each public method runs exactly one stage (LLM, bottom speech stack, top speech stack, a head)
over its own KV cache, so the generation loop decides the schedule (doc/model.md §7.4).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import nn

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.llama import (KVCache, LlamaDecoderLayer, RMSNorm, Rotary,
                                         TopAudioDecoderLayer)


def vision_module() -> ModuleType:
    """IO's vision module, imported only when a checkpoint has a vision tower."""
    try:
        return importlib.import_module("stream_omni_ros.model.vision")
    except ImportError as error:
        raise ConfigError(f"this checkpoint needs vision support, which failed to import: "
                          f"{error}") from error


@dataclass(frozen=True)
class StreamCaches:
    """The three independent KV caches of one request (LLM, bottom and top speech stacks)."""

    llm: KVCache
    bottom: KVCache
    top: KVCache

    def reset(self) -> None:
        """Forget every position in all three caches."""
        for cache in (self.llm, self.bottom, self.top):
            cache.reset()


class StreamOmniModel(nn.Module):
    """Everything under the checkpoint prefix `model.`."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        H, eps = config.hidden_size, config.rms_norm_eps
        self.embed_tokens = nn.Embedding(config.text_vocab_size, H)
        self.layers = nn.ModuleList(
            LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(H, eps)
        self.audio_embed_tokens = nn.Embedding(config.vocab_size, H)
        self.bottom_audio_layers = nn.ModuleList(
            LlamaDecoderLayer(config) for _ in range(config.num_bottom_audio_layers))
        self.audio_norm = RMSNorm(H, eps)
        self.top_audio_layers = nn.ModuleList(
            TopAudioDecoderLayer(config) for _ in range(config.num_top_audio_layers))
        self.top_audio_norm = RMSNorm(H, eps)
        self.vision_settings = None
        if config.has_vision:
            self._build_vision(config)

    def _build_vision(self, config: StreamOmniConfig) -> None:
        """SigLIP tower, projector and (for unpad merging) the image-newline vector."""
        vision = vision_module()
        raw = config.raw
        settings = vision.VisionSettings.from_config(dict(raw), config.weight_keys or None)
        self.vision_settings = settings
        self.vision_tower = vision.SiglipTower(settings)
        self.mm_projector = vision.build_projector(
            settings.projector_type, settings.mm_hidden_size, config.hidden_size)
        if "unpad" in str(raw.get("mm_patch_merge_type", "flat")):
            self.image_newline = nn.Parameter(torch.empty(config.hidden_size))


class StreamOmniForCausalLM(nn.Module):
    """Stream-Omni: Llama-3.1 LLM + bottom/top speech stacks + CTC, unit and text heads."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        H = config.hidden_size
        self.config = config
        self.model = StreamOmniModel(config)
        self.lm_head = nn.Linear(H, config.text_vocab_size, bias=False)
        self.audio_to_text_proj = nn.Linear(H, config.text_vocab_size, bias=False)
        self.audio_lm_head = nn.Linear(H, config.vocab_size, bias=False)
        self.text_to_audio_proj = nn.Embedding(config.vocab_size, H)
        self.rotary = Rotary(config)

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return self.model.norm.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """Activation dtype (norm weights are never quantised)."""
        return self.model.norm.weight.dtype

    def new_caches(self, max_llm_len: int, max_speech_len: int) -> StreamCaches:
        """Preallocate the LLM cache and the two speech-side caches on the model's device."""
        c = self.config

        def make(name: str, layers: int, length: int) -> KVCache:
            return KVCache(name, layers, c.num_key_value_heads, c.head_dim, length,
                           self.device, self.dtype)
        return StreamCaches(llm=make("LLM", c.num_hidden_layers, max_llm_len),
                            bottom=make("bottom speech", c.num_bottom_audio_layers,
                                        max_speech_len),
                            top=make("top speech", c.num_top_audio_layers, max_speech_len))

    def _run_stack(self, layers: nn.ModuleList, x: torch.Tensor, cache: KVCache,
                   cross: tuple | None = None) -> torch.Tensor:
        """Run one stack over x [1, T, H] at positions cache.length.. and commit the cache."""
        T = x.shape[1]
        start = cache.reserve(T)
        positions = torch.arange(start, start + T, device=x.device)
        rope = self.rotary.cos_sin(positions, x.dtype)
        for index, layer in enumerate(layers):
            x = layer(x, rope, cache, index, start) if cross is None else layer(
                x, rope, cache, index, start, cross)
        cache.advance(T)
        return x

    @torch.inference_mode()
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-token embeddings [1, T] -> [1, T, H]."""
        return self.model.embed_tokens(ids)

    @torch.inference_mode()
    def llm_forward(self, embeds: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """LLM over input embeddings [1, T, H] -> normed hidden states [1, T, H]."""
        return self.model.norm(self._run_stack(self.model.layers, embeds, cache))

    @torch.inference_mode()
    def text_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """LLM hidden states [1, T, H] -> text logits [1, T, Vt]."""
        return self.lm_head(hidden)

    @torch.inference_mode()
    def bottom_forward(self, ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Speech-side ids [1, T] -> bottom-stack states after `audio_norm` [1, T, H]."""
        x = self.model.audio_embed_tokens(ids)
        return self.model.audio_norm(self._run_stack(self.model.bottom_audio_layers, x, cache))

    @torch.inference_mode()
    def ctc_logits(self, h_b: torch.Tensor) -> torch.Tensor:
        """Bottom states [1, T, H] -> CTC logits over the text vocabulary [1, T, Vt]."""
        return self.audio_to_text_proj(h_b)

    @torch.inference_mode()
    def soft_text_embeddings(self, ctc_logits: torch.Tensor) -> torch.Tensor:
        """softmax(CTC logits) @ embed_tokens.weight: the LLM input per speech position."""
        probs = torch.softmax(ctc_logits.float(), dim=-1).to(ctc_logits.dtype)
        return probs @ self.model.embed_tokens.weight

    @torch.inference_mode()
    def top_forward(self, h_b: torch.Tensor, cache: KVCache,
                    window_ids: torch.Tensor | None = None,
                    window_positions: torch.Tensor | None = None) -> torch.Tensor:
        """Top stack over bottom states [1, T, H]; the last position attends to the window."""
        cross = None
        if window_ids is not None and window_ids.numel() > 0:
            if window_positions is None or window_positions.numel() != window_ids.shape[-1]:
                raise InputError(
                    f"top_forward: window_positions must hold one position per window id "
                    f"({window_ids.shape[-1]}), got "
                    f"{None if window_positions is None else tuple(window_positions.shape)}")
            text = self.text_to_audio_proj(window_ids)  # [1, W, H]
            last_pos = cache.length + h_b.shape[1] - 1
            # arange launches a kernel; torch.tensor would copy from the host and sync
            last = torch.arange(last_pos, last_pos + 1, device=h_b.device)
            cross = (text, self.rotary.cos_sin(last, h_b.dtype),
                     self.rotary.cos_sin(window_positions.to(h_b.device), h_b.dtype))
        x = self._run_stack(self.model.top_audio_layers, h_b, cache, cross)
        return self.model.top_audio_norm(x)

    @torch.inference_mode()
    def unit_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Top states [1, T, H] -> logits over the full vocabulary [1, T, V]."""
        return self.audio_lm_head(hidden)

    @torch.inference_mode()
    def encode_image(self, rgb: np.ndarray) -> torch.Tensor:
        """RGB uint8 [h, w, 3] -> image tokens [n_tokens, H] ready to splice into the LLM input."""
        settings = self.model.vision_settings
        if settings is None:
            raise InputError("encode_image: this checkpoint has no vision tower "
                             "(config.json has no mm_vision_tower)")
        newline = getattr(self.model, "image_newline", None)
        return vision_module().encode_image(rgb, settings, self.model.vision_tower,
                                            self.model.mm_projector, newline)
