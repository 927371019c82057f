"""The flow's text-free unit encoder: CosyVoice's ConformerEncoder as configured for the flow.

Only the configuration CosyVoice-300M(-25Hz) uses is implemented: linear input layer, ESPnet
relative positional encoding (``rel_pos_espnet``), relative-position self-attention, pre-norm,
no convolution module, no macaron feed-forward, final LayerNorm. Attribute paths equal the keys
of ``flow.pt`` under ``encoder.``; dropout is omitted (inference only) and has no parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from stream_omni_ros.errors import ConfigError

# Values the CosyVoice yaml may name; anything else would need code we do not have.
_SUPPORTED_CHOICES = {
    "input_layer": ("linear",),
    "pos_enc_layer_type": ("rel_pos_espnet",),
    "selfattention_layer_type": ("rel_selfattn",),
    "activation_type": ("swish",),
    "use_cnn_module": (False,),
    "macaron_style": (False,),
    "normalize_before": (True,),
}


@dataclass(frozen=True)
class ConformerConfig:
    """Shape of the flow encoder (defaults: CosyVoice-300M-25Hz)."""

    input_size: int = 512
    output_size: int = 512
    attention_heads: int = 8
    linear_units: int = 2048
    num_blocks: int = 6

    @classmethod
    def from_hparams(cls, encoder: Mapping[str, Any]) -> ConformerConfig:
        """Read the ``flow.encoder`` mapping of cosyvoice.yaml, rejecting unsupported variants."""
        for field_name, allowed in _SUPPORTED_CHOICES.items():
            if field_name in encoder and encoder[field_name] not in allowed:
                raise ConfigError(
                    f"flow.encoder.{field_name} = {encoder[field_name]!r} is not supported; "
                    f"expected one of {allowed}")
        values = {name: hparam_int(encoder, name, "flow.encoder")
                  for name in ("input_size", "output_size", "attention_heads",
                               "linear_units", "num_blocks") if name in encoder}
        cfg = cls(**values)
        if cfg.output_size % cfg.attention_heads:
            raise ConfigError(
                f"flow.encoder.output_size {cfg.output_size} is not a multiple of "
                f"attention_heads {cfg.attention_heads}")
        return cfg


def hparam_int(section: Mapping[str, Any], name: str, where: str) -> int:
    """Return ``section[name]`` as an int, or raise ConfigError naming ``where.name``."""
    value = section[name]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{where}.{name} = {value!r} is not an integer")
    try:
        number = float(value)
    except ValueError as err:
        raise ConfigError(f"{where}.{name} = {value!r} is not an integer") from err
    if number != int(number):
        raise ConfigError(f"{where}.{name} = {value!r} is not an integer")
    return int(number)


def relative_position_table(length: int, dim: int, device: torch.device,
                            dtype: torch.dtype) -> torch.Tensor:
    """ESPnet relative sinusoids for offsets length-1 ... -(length-1): [1, 2*length-1, dim]."""
    offsets = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32)
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32)
                         * -(math.log(10000.0) / dim))
    angles = offsets[:, None] * inv_freq[None, :]  # [2L-1, dim/2]
    table = torch.stack((angles.sin(), angles.cos()), dim=-1)  # [2L-1, dim/2, 2]
    return table.reshape(1, 2 * length - 1, dim).to(dtype)  # sin/cos interleaved


def select_relative_scores(bd: torch.Tensor) -> torch.Tensor:
    """Pick score[i, j] = bd[i, T-1-i+j] (relative offset i-j) from [B, H, T, 2T-1] scores."""
    B, H, T, W = bd.shape
    bd = bd.contiguous()
    s_b, s_h = bd.stride(0), bd.stride(1)
    # row i starts at i*W; offset i-j lives at column T-1-i+j, so rows advance by W-1.
    return bd.as_strided((B, H, T, T), (s_b, s_h, W - 1, 1), bd.storage_offset() + T - 1)


class RelPositionMultiHeadedAttention(nn.Module):
    """Transformer-XL style self-attention with ESPnet relative positions (rel_selfattn)."""

    def __init__(self, n_head: int, n_feat: int) -> None:
        super().__init__()
        self.h = n_head
        self.d_k = n_feat // n_head
        self.linear_q = nn.Linear(n_feat, n_feat)
        self.linear_k = nn.Linear(n_feat, n_feat)
        self.linear_v = nn.Linear(n_feat, n_feat)
        self.linear_out = nn.Linear(n_feat, n_feat)
        self.linear_pos = nn.Linear(n_feat, n_feat, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.d_k)  # [B, T, H, Dk]

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """Attend over all frames of x [B, T, D] with positions pos_emb [1, 2T-1, D]."""
        B, T, D = x.shape
        q = self._heads(self.linear_q(x))
        k = self._heads(self.linear_k(x)).transpose(1, 2)  # [B, H, T, Dk]
        v = self._heads(self.linear_v(x)).transpose(1, 2)  # [B, H, T, Dk]
        p = self._heads(self.linear_pos(pos_emb)).transpose(1, 2)  # [1, H, 2T-1, Dk]
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # [B, H, T, Dk]
        q_v = (q + self.pos_bias_v).transpose(1, 2)  # [B, H, T, Dk]
        bd = select_relative_scores(torch.matmul(q_v, p.transpose(-2, -1)))  # [B, H, T, T]
        # (ac + bd) / sqrt(d_k): SDPA scales q_u.k by 1/sqrt(d_k), so bd enters pre-scaled.
        y = F.scaled_dot_product_attention(q_u, k, v, attn_mask=bd / math.sqrt(self.d_k))
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, H*Dk]
        return self.linear_out(y)


class PositionwiseFeedForward(nn.Module):
    """w_2(swish(w_1(x)))."""

    def __init__(self, dim: int, hidden_units: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(dim, hidden_units)
        self.w_2 = nn.Linear(hidden_units, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the feed-forward to every frame of x [B, T, D]."""
        return self.w_2(F.silu(self.w_1(x)))


class ConformerEncoderLayer(nn.Module):
    """Pre-norm block: x + MHA(norm_mha(x)), then x + FF(norm_ff(x)) (no conv, no macaron)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        dim = cfg.output_size
        self.self_attn = RelPositionMultiHeadedAttention(cfg.attention_heads, dim)
        self.feed_forward = PositionwiseFeedForward(dim, cfg.linear_units)
        self.norm_ff = nn.LayerNorm(dim, eps=1e-5)
        self.norm_mha = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor) -> torch.Tensor:
        """Encode x [B, T, D]."""
        x = x + self.self_attn(self.norm_mha(x), pos_emb)
        return x + self.feed_forward(self.norm_ff(x))


class LinearNoSubsampling(nn.Module):
    """Input layer: Linear + LayerNorm, then the x*sqrt(D) scaling of the ESPnet encoding."""

    def __init__(self, idim: int, odim: int) -> None:
        super().__init__()
        self.out = nn.Sequential(nn.Linear(idim, odim), nn.LayerNorm(odim, eps=1e-5))
        self.xscale = math.sqrt(odim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the scaled input [B, T, D] and its relative position table [1, 2T-1, D]."""
        x = self.out(x) * self.xscale
        pos_emb = relative_position_table(x.shape[1], x.shape[2], x.device, x.dtype)
        return x, pos_emb


class ConformerEncoder(nn.Module):
    """Unit-embedding encoder: [B, T, input_size] -> [B, T, output_size] (all frames valid)."""

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = LinearNoSubsampling(cfg.input_size, cfg.output_size)
        self.encoders = nn.ModuleList(ConformerEncoderLayer(cfg) for _ in range(cfg.num_blocks))
        self.after_norm = nn.LayerNorm(cfg.output_size, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode x [B, T, input_size]; batches must be unpadded (no mask is applied)."""
        x, pos_emb = self.embed(x)
        for layer in self.encoders:
            x = layer(x, pos_emb)
        return self.after_norm(x)
