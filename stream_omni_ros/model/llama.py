"""Llama decoder blocks, preallocated KV caches, Llama-3.1 RoPE and the top-stack cross-attention.

Written against the plain Llama math (pre-RMSNorm, GQA attention with rotate-half RoPE, SwiGLU)
so it does not depend on transformers' internal attention or cache APIs.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from stream_omni_ros.errors import InputError
from stream_omni_ros.model.config import RopeScaling, StreamOmniConfig


class RMSNorm(nn.Module):
    """Llama RMSNorm: variance in fp32, weight applied after casting back."""

    def __init__(self, size: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension."""
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rope_inv_freq(head_dim: int, theta: float, scaling: RopeScaling | None) -> torch.Tensor:
    """Inverse rotary frequencies [head_dim/2] in fp32, with Llama-3.1 scaling if given."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64, device="cpu").float() / head_dim
    inv_freq = 1.0 / (theta ** exponents)
    if scaling is None:
        return inv_freq
    old_len = scaling.original_max_position_embeddings
    low_freq_wavelen = old_len / scaling.low_freq_factor
    high_freq_wavelen = old_len / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor)
    blended = (1 - smooth) * inv_freq / scaling.factor + smooth * inv_freq
    scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / scaling.factor, inv_freq)
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return torch.where(is_medium, blended, scaled)


def rope_cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [len(positions), head_dim] (rotate-half layout) from inv_freq on that device."""
    freqs = positions.float()[:, None] * inv_freq[None, :]  # [T, hd/2]
    angles = torch.cat((freqs, freqs), dim=-1)  # [T, hd]
    return angles.cos().to(dtype), angles.sin().to(dtype)


class Rotary:
    """cos/sin tables for arbitrary positions; shared by every stack (no state-dict entries)."""

    def __init__(self, config: StreamOmniConfig) -> None:
        self.inv_freq_cpu = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling)
        self._inv_freq_by_device: dict[torch.device, torch.Tensor] = {}

    def inv_freq(self, device: torch.device) -> torch.Tensor:
        """Inverse frequencies [head_dim/2] on `device` (copied there once)."""
        inv_freq = self._inv_freq_by_device.get(device)
        if inv_freq is None:
            inv_freq = self.inv_freq_cpu.to(device)
            self._inv_freq_by_device[device] = inv_freq
        return inv_freq

    def cos_sin(self, positions: torch.Tensor, dtype: torch.dtype,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [len(positions), head_dim] (rotate-half layout) in `dtype`."""
        return rope_cos_sin(positions, self.inv_freq(positions.device), dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [B, heads, T, hd] by the angles of cos/sin [T, hd]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class KVCache:
    """Preallocated keys/values of one stack: [layers, 2, 1, kv_heads, capacity, head_dim]."""

    def __init__(self, name: str, num_layers: int, kv_heads: int, head_dim: int, capacity: int,
                 device: torch.device | str, dtype: torch.dtype) -> None:
        self.name = name
        self.capacity = capacity
        self.kv = torch.zeros(num_layers, 2, 1, kv_heads, capacity, head_dim,
                              device=device, dtype=dtype)
        self.length = 0

    def reserve(self, count: int) -> int:
        """Check there is room for `count` more positions; return the first new position."""
        if self.length + count > self.capacity:
            raise InputError(
                f"{self.name} KV cache is full: {self.length} positions + {count} new > "
                f"capacity {self.capacity}; allocate larger caches with new_caches()")
        return self.length

    def write(self, layer: int, start: int, k: torch.Tensor, v: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v [1, kv_heads, T, hd] at start.. and return all keys/values so far."""
        end = start + k.shape[2]
        self.kv[layer, 0, :, :, start:end] = k
        self.kv[layer, 1, :, :, start:end] = v
        return self.kv[layer, 0, :, :, :end], self.kv[layer, 1, :, :, :end]

    def attention_mask(self, start: int, count: int, device: torch.device,
                       ) -> tuple[torch.Tensor | None, bool]:
        """(mask, is_causal) for SDPA of `count` queries at start.. over the keys written."""
        if start == 0 and count > 1:
            return None, True
        return causal_mask(start, count, device), False

    def advance(self, count: int) -> None:
        """Commit `count` positions written by every layer."""
        self.length += count

    def truncate(self, length: int) -> None:
        """Forget every position from `length` on (later writes overwrite them)."""
        if not 0 <= length <= self.length:
            raise InputError(f"{self.name} KV cache: cannot truncate to {length}; it holds "
                             f"{self.length} positions")
        self.length = length

    def reset(self) -> None:
        """Forget every position."""
        self.length = 0

    def reuse(self) -> KVCache:
        """A new empty cache over this one's storage (stale entries are never read)."""
        cache = copy.copy(self)
        cache.length = 0
        return cache


class StaticStep:
    """One position written at a device index; attention spans the whole cache under a mask.

    Shapes never depend on how full the cache is, so a compiled step replays for every position.
    """

    def __init__(self, kv: torch.Tensor, position: torch.Tensor) -> None:
        self.kv = kv  # a KVCache's [layers, 2, 1, kv_heads, capacity, head_dim]
        self.position = position  # LongTensor [1] on kv's device
        key_positions = torch.arange(kv.shape[4], device=kv.device)
        self.mask = (key_positions <= position)[None]  # [1, capacity]: keys written so far

    def write(self, layer: int, start: object, k: torch.Tensor, v: torch.Tensor,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k/v [1, kv_heads, 1, hd] at the device position; return the whole layer."""
        self.kv[layer, 0].index_copy_(2, self.position, k)
        self.kv[layer, 1].index_copy_(2, self.position, v)
        return self.kv[layer, 0], self.kv[layer, 1]

    def attention_mask(self, start: object, count: int, device: torch.device,
                       ) -> tuple[torch.Tensor, bool]:
        """The key mask [1, capacity] (one query per step)."""
        return self.mask, False


def causal_mask(start: int, count: int, device: torch.device) -> torch.Tensor | None:
    """Boolean mask [count, start+count] for queries at start.. (None when SDPA needs none)."""
    if count == 1:
        return None
    query_pos = torch.arange(start, start + count, device=device)[:, None]
    key_pos = torch.arange(start + count, device=device)[None, :]
    return key_pos <= query_pos


def grouped_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                      mask: torch.Tensor | None, is_causal: bool) -> torch.Tensor:
    """SDPA of q [B, h, T, hd] over grouped keys/values [B, kv_heads, L, hd] -> [B, h, T, hd]."""
    B, heads, T, hd = q.shape
    kv_heads = keys.shape[1]
    if heads == kv_heads:
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask,
                                              is_causal=is_causal)
    if T == 1:
        # One position: the query heads sharing a KV head become that head's query rows. With
        # a key mask, enable_gqa leaves only the math kernel, which copies K/V per query head.
        rows = q.reshape(B, kv_heads, heads // kv_heads, hd)
        y = F.scaled_dot_product_attention(rows, keys, values, attn_mask=mask)
        return y.reshape(B, heads, 1, hd)
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=is_causal,
                                          enable_gqa=True)


class SelfAttention(nn.Module):
    """Causal GQA self-attention with RoPE over a KV cache (checkpoint name `self_attn`)."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        hd, bias = config.head_dim, config.attention_bias
        self.heads, self.kv_heads, self.head_dim = (
            config.num_attention_heads, config.num_key_value_heads, hd)
        self.q_proj = nn.Linear(config.hidden_size, self.heads * hd, bias=bias)
        self.k_proj = nn.Linear(config.hidden_size, self.kv_heads * hd, bias=bias)
        self.v_proj = nn.Linear(config.hidden_size, self.kv_heads * hd, bias=bias)
        self.o_proj = nn.Linear(self.heads * hd, config.hidden_size, bias=bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                cache: KVCache | StaticStep, layer: int, start: int | torch.Tensor,
                ) -> torch.Tensor:
        """x [1, T, H] at positions start..start+T-1 (a device tensor for StaticStep)."""
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2)  # [B,h,T,hd]
        k = self.k_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        keys, values = cache.write(layer, start, k, v)
        mask, is_causal = cache.attention_mask(start, T, x.device)
        y = grouped_attention(q, keys, values, mask, is_causal)
        y = y.transpose(1, 2).reshape(B, T, self.heads * self.head_dim)  # [B, T, h*hd]
        return self.o_proj(y)


class CrossAttention(nn.Module):
    """Attention from the newest speech position to the text window (`audio_text_attn`)."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        H, bias = config.hidden_size, config.attention_bias
        self.heads, self.head_dim = config.num_attention_heads, config.head_dim
        inner = self.heads * self.head_dim
        self.q_proj = nn.Linear(H, inner, bias=bias)
        self.k_proj = nn.Linear(H, inner, bias=bias)
        self.v_proj = nn.Linear(H, inner, bias=bias)
        self.o_proj = nn.Linear(inner, H, bias=bias)

    def forward(self, x: torch.Tensor, query_rope: tuple[torch.Tensor, torch.Tensor],
                text: torch.Tensor, key_rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """x [1, 1, H] attends to text [1, W, H] (no mask) -> [1, 1, H]."""
        B, W, _ = text.shape
        q = self.q_proj(x).view(B, 1, self.heads, self.head_dim).transpose(1, 2)  # [B,h,1,hd]
        k = self.k_proj(text).view(B, W, self.heads, self.head_dim).transpose(1, 2)  # [B,h,W,hd]
        v = self.v_proj(text).view(B, W, self.heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, *query_rope), apply_rotary(k, *key_rope)
        y = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(y.transpose(1, 2).reshape(B, 1, self.heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU feed-forward block (checkpoint name `mlp`)."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        H, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(H, inner, bias=bias)
        self.up_proj = nn.Linear(H, inner, bias=bias)
        self.down_proj = nn.Linear(inner, H, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[.., H] -> [.., H]."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    """Pre-norm Llama block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__()
        self.self_attn = SelfAttention(config)
        self.mlp = MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                cache: KVCache | StaticStep, layer: int, start: int | torch.Tensor,
                ) -> torch.Tensor:
        """x [1, T, H] -> [1, T, H], extending `cache` at layer index `layer`."""
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, layer, start)
        return x + self.mlp(self.post_attention_layernorm(x))


class TopAudioDecoderLayer(LlamaDecoderLayer):
    """Llama block with cross-attention to the text window on the last position.

    See doc/model.md §7.1.
    """

    def __init__(self, config: StreamOmniConfig) -> None:
        super().__init__(config)
        self.audio_text_attn = CrossAttention(config)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                cache: KVCache | StaticStep, layer: int, start: int | torch.Tensor,
                cross: tuple[torch.Tensor, tuple, tuple] | None = None) -> torch.Tensor:
        """Like the Llama block; `cross` = (text [1,W,H], query rope, key rope) or None."""
        x = x + self.self_attn(self.input_layernorm(x), rope, cache, layer, start)
        if cross is not None:
            text, query_rope, key_rope = cross
            last = x[:, -1:] + self.audio_text_attn(x[:, -1:], query_rope, text, key_rope)
            x = torch.cat((x[:, :-1], last), dim=1) if x.shape[1] > 1 else last
        return x + self.mlp(self.post_attention_layernorm(x))
