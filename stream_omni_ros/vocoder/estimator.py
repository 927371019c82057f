"""The CFM vector-field estimator: CosyVoice's 1-D U-Net ``ConditionalDecoder``.

Built from Matcha-TTS blocks (ResnetBlock1D, Block1D, Downsample1D, Upsample1D,
TimestepEmbedding) and diffusers' BasicTransformerBlock (self-attention over time + GELU
feed-forward). Attribute paths equal the keys of ``flow.pt`` under ``decoder.estimator.``.
Inputs are whole, unpadded sequences, so the all-ones masks of the original are dropped: every
multiplication by them is an identity, and the attention mask the original adds to the scores
is a constant per row, which softmax ignores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.vocoder.conformer import hparam_int

GROUPS = 8  # GroupNorm groups of Matcha's Block1D; channel counts must be multiples of it


@dataclass(frozen=True)
class EstimatorConfig:
    """Shape of the U-Net estimator (defaults: CosyVoice-300M-25Hz)."""

    in_channels: int = 320
    out_channels: int = 80
    channels: tuple[int, ...] = (256, 256)
    attention_head_dim: int = 64
    n_blocks: int = 4
    num_mid_blocks: int = 12
    num_heads: int = 8

    @classmethod
    def from_hparams(cls, estimator: Mapping[str, Any]) -> EstimatorConfig:
        """Read the ``flow.decoder.estimator`` mapping of cosyvoice.yaml."""
        where = "flow.decoder.estimator"
        act_fn = estimator.get("act_fn", "gelu")
        if act_fn != "gelu":
            raise ConfigError(f"{where}.act_fn = {act_fn!r} is not supported; expected 'gelu'")
        values: dict[str, Any] = {
            name: hparam_int(estimator, name, where)
            for name in ("in_channels", "out_channels", "attention_head_dim", "n_blocks",
                         "num_mid_blocks", "num_heads") if name in estimator}
        if "channels" in estimator:
            channels = estimator["channels"]
            if not isinstance(channels, (list, tuple)) or not channels:
                raise ConfigError(f"{where}.channels = {channels!r}; expected a non-empty list")
            values["channels"] = tuple(hparam_int({"c": c}, "c", f"{where}.channels")
                                       for c in channels)
        cfg = cls(**values)
        if any(c % GROUPS for c in cfg.channels):
            raise ConfigError(f"{where}.channels = {list(cfg.channels)}; every entry must be a "
                              f"multiple of {GROUPS} (GroupNorm groups)")
        return cfg

    @property
    def time_embed_dim(self) -> int:
        """Width of the time embedding (4 x the first channel count, as in Matcha)."""
        return self.channels[0] * 4


def sinusoidal_time_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Matcha's SinusoidalPosEmb: t [S] -> [S, dim] = (sin | cos) of scale*t*freqs."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, device=t.device, dtype=torch.float32)
                      * -(math.log(10000.0) / (half - 1)))
    angles = scale * t.float()[:, None] * freqs[None, :]  # [S, half]
    return torch.cat((angles.sin(), angles.cos()), dim=-1).to(t.dtype)


class TimestepEmbedding(nn.Module):
    """linear_2(silu(linear_1(x)))."""

    def __init__(self, in_channels: int, time_embed_dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project a sinusoidal embedding [S, in] to [S, time_embed_dim]."""
        return self.linear_2(F.silu(self.linear_1(x)))


class Block1D(nn.Module):
    """Conv1d k3 -> GroupNorm(8) -> Mish, as ``block.0`` / ``block.1`` (Mish has no weights)."""

    def __init__(self, dim: int, dim_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv1d(dim, dim_out, 3, padding=1),
                                   nn.GroupNorm(GROUPS, dim_out), nn.Mish())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block to x [B, C, T]."""
        return self.block(x)


class ResnetBlock1D(nn.Module):
    """Two Block1Ds with the time embedding added in between, plus a 1x1 residual conv."""

    def __init__(self, dim: int, dim_out: int, time_emb_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Mish(), nn.Linear(time_emb_dim, dim_out))
        self.block1 = Block1D(dim, dim_out)
        self.block2 = Block1D(dim_out, dim_out)
        self.res_conv = nn.Conv1d(dim, dim_out, 1)

    def forward(self, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """x [B, C, T], t_emb [B, E] -> [B, C_out, T]."""
        h = self.block1(x) + self.mlp(t_emb).unsqueeze(-1)
        return self.block2(h) + self.res_conv(x)


class Attention(nn.Module):
    """diffusers' self-attention: bias-free q/k/v, ``to_out.0`` with bias."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention over the time axis of x [B, T, D]."""
        B, T, _ = x.shape
        q, k, v = (proj(x).view(B, T, self.heads, -1).transpose(1, 2)  # [B, H, T, Dh]
                   for proj in (self.to_q, self.to_k, self.to_v))
        y = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](y.transpose(1, 2).reshape(B, T, -1))  # [B, T, H*Dh]


class GELUProjection(nn.Module):
    """diffusers' GELU module: exact (erf) GELU of a Linear ``proj``."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """gelu(proj(x))."""
        return F.gelu(self.proj(x))


class FeedForward(nn.Module):
    """``net.0`` = GELU projection to 4*dim, ``net.1`` = dropout (no-op), ``net.2`` = Linear."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.ModuleList([GELUProjection(dim, 4 * dim), nn.Identity(),
                                  nn.Linear(4 * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward to x [B, T, D]."""
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention (norm1/attn1) and feed-forward (norm3/ff) with residuals."""

    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]."""
        x = x + self.attn1(self.norm1(x))
        return x + self.ff(self.norm3(x))


class Downsample1D(nn.Module):
    """Strided conv k3 s2 p1: T -> ceil(T/2)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Halve the time axis of x [B, C, T]."""
        return self.conv(x)


class Upsample1D(nn.Module):
    """Transposed conv k4 s2 p1: T -> 2T."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose1d(dim, dim, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Double the time axis of x [B, C, T]."""
        return self.conv(x)


def _stage(cfg: EstimatorConfig, dim_in: int, dim_out: int, resample: nn.Module | None
           ) -> nn.ModuleList:
    """One U-Net stage: [resnet, transformer blocks(, resample)] as the checkpoint indexes it."""
    blocks = nn.ModuleList(BasicTransformerBlock(dim_out, cfg.num_heads, cfg.attention_head_dim)
                           for _ in range(cfg.n_blocks))
    parts = [ResnetBlock1D(dim_in, dim_out, cfg.time_embed_dim), blocks]
    return nn.ModuleList(parts + ([resample] if resample is not None else []))


def _conv3(dim: int) -> nn.Conv1d:
    """Length-preserving k3 conv closing the last down/up stage."""
    return nn.Conv1d(dim, dim, 3, padding=1)


def _run_stage(stage: nn.ModuleList, x: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    """Resnet then transformer blocks over time: x [B, C, T] -> [B, C_out, T]."""
    x = stage[0](x, t_emb).transpose(1, 2)  # [B, T, C]
    for block in stage[1]:
        x = block(x)
    return x.transpose(1, 2).contiguous()  # [B, C, T]


class ConditionalDecoder(nn.Module):
    """U-Net over time predicting the flow's velocity from [x | mu | spk | cond] channels."""

    def __init__(self, cfg: EstimatorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        self.time_mlp = TimestepEmbedding(cfg.in_channels, cfg.time_embed_dim)
        last = len(ch) - 1
        dims_in = (cfg.in_channels,) + ch[:-1]
        # every stage but the last halves (down) or doubles (up) time; the last keeps it
        self.down_blocks = nn.ModuleList(
            _stage(cfg, dims_in[i], ch[i], Downsample1D(ch[i]) if i < last else _conv3(ch[i]))
            for i in range(len(ch)))
        self.mid_blocks = nn.ModuleList(_stage(cfg, ch[-1], ch[-1], None)
                                        for _ in range(cfg.num_mid_blocks))
        up = ch[::-1] + (ch[0],)
        self.up_blocks = nn.ModuleList(
            _stage(cfg, 2 * up[i], up[i + 1],
                   Upsample1D(up[i + 1]) if i < last else _conv3(up[i + 1]))
            for i in range(len(ch)))
        self.final_block = Block1D(up[-1], up[-1])
        self.final_proj = nn.Conv1d(up[-1], cfg.out_channels, 1)

    def embed_time(self, t: torch.Tensor) -> torch.Tensor:
        """Time steps t [S] -> embeddings [S, time_embed_dim] (computable once per solve)."""
        return self.time_mlp(sinusoidal_time_embedding(t, self.cfg.in_channels))

    def forward(self, h: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
        """Velocity [B, out, T] from stacked inputs h [B, in_channels, T] and t_emb [B, E]."""
        skips = []
        for stage in self.down_blocks:
            h = _run_stage(stage, h, t_emb)
            skips.append(h)
            h = stage[2](h)
        for stage in self.mid_blocks:
            h = _run_stage(stage, h, t_emb)
        for stage in self.up_blocks:
            skip = skips.pop()
            # the transposed conv may overshoot an odd length by one frame
            h = torch.cat((h[:, :, :skip.shape[-1]], skip), dim=1)  # [B, 2C, T]
            h = stage[2](_run_stage(stage, h, t_emb))
        return self.final_proj(self.final_block(h))
