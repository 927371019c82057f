"""CosyVoice's flow-matching model (``MaskedDiffWithXvec``): speech units -> 80-bin mel.

Units are embedded, Conformer-encoded, projected to 80 dims and linearly interpolated to the
mel frame rate (``units_to_mu``); a conditional flow (``solve``) then integrates the U-Net
velocity from Gaussian noise to a mel spectrogram with classifier-free guidance. Attribute paths
equal the keys of CosyVoice's ``flow.pt``. Stream-Omni never uses a prompt, so the prompt branch
(prompt tokens / prompt mel) of the original is absent and the CFM ``cond`` input is all zeros.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.vocoder.weights import load_state_strict
from stream_omni_ros.vocoder.conformer import ConformerConfig, ConformerEncoder, hparam_int
from stream_omni_ros.vocoder.estimator import ConditionalDecoder, EstimatorConfig


@dataclass(frozen=True)
class FlowConfig:
    """Flow hyperparameters (defaults: CosyVoice-300M-25Hz's cosyvoice.yaml and code)."""

    input_size: int = 512
    output_size: int = 80
    spk_embed_dim: int = 192
    vocab_size: int = 4096
    input_frame_rate: int = 25
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    regulator_stages: int = 4  # len(length_regulator.sampling_ratios)
    estimator: EstimatorConfig = field(default_factory=EstimatorConfig)
    inference_cfg_rate: float = 0.7
    t_scheduler: str = "cosine"
    n_timesteps: int = 10
    # constants of CosyVoice's code rather than of its yaml
    mel_rate: int = 22050
    mel_hop: int = 256
    edge_units: int = 20  # head/tail units interpolated on their own when N > 2*edge_units

    def __post_init__(self) -> None:
        expected = {"encoder.input_size": (self.encoder.input_size, self.input_size),
                    "estimator.in_channels": (self.estimator.in_channels, 4 * self.output_size),
                    "estimator.out_channels": (self.estimator.out_channels, self.output_size)}
        for name, (value, wanted) in expected.items():
            if value != wanted:
                raise ConfigError(f"flow {name} = {value}; expected {wanted} "
                                  f"(input_size {self.input_size}, output_size "
                                  f"{self.output_size})")
        if self.t_scheduler not in ("cosine", "linear"):
            raise ConfigError(f"flow t_scheduler = {self.t_scheduler!r}; "
                              "expected 'cosine' or 'linear'")

    @classmethod
    def from_hparams(cls, flow: Mapping[str, Any]) -> FlowConfig:
        """Read the ``flow:`` mapping of cosyvoice.yaml (as returned by the safe yaml reader)."""
        values: dict[str, Any] = {
            name: hparam_int(flow, name, "flow")
            for name in ("input_size", "output_size", "spk_embed_dim", "vocab_size",
                         "input_frame_rate") if name in flow}
        if flow.get("output_type", "mel") != "mel":
            raise ConfigError(f"flow.output_type = {flow['output_type']!r}; expected 'mel'")
        values["encoder"] = ConformerConfig.from_hparams(_section(flow, "encoder", "flow"))
        regulator = _section(flow, "length_regulator", "flow")
        values["regulator_stages"] = len(regulator.get("sampling_ratios", (1, 1, 1, 1)))
        output_size = values.get("output_size", cls.output_size)
        for where, section, key in (("flow.length_regulator", regulator, "channels"),
                                    ("flow.decoder", _section(flow, "decoder", "flow"),
                                     "spk_emb_dim")):
            if key in section and hparam_int(section, key, where) != output_size:
                raise ConfigError(f"{where}.{key} = {section[key]!r}; expected the flow "
                                  f"output_size {output_size}")
        decoder = _section(flow, "decoder", "flow")
        values["estimator"] = EstimatorConfig.from_hparams(
            _section(decoder, "estimator", "flow.decoder"))
        values.update(_cfm_values(decoder.get("cfm_params") or {}))
        return cls(**values)


def _section(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    """A nested mapping of the yaml (absent -> empty, i.e. defaults)."""
    section = parent.get(name, {})
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where}.{name} = {section!r}; expected a mapping")
    return section


def _cfm_values(cfm_params: Mapping[str, Any]) -> dict[str, Any]:
    """Inference settings from ``cfm_params`` (an omegaconf.DictConfig node with ``content``)."""
    content = cfm_params.get("content", cfm_params)
    solver = content.get("solver", "euler")
    if solver != "euler":
        raise ConfigError(f"flow.decoder.cfm_params.solver = {solver!r}; expected 'euler'")
    values: dict[str, Any] = {}
    if "t_scheduler" in content:
        values["t_scheduler"] = str(content["t_scheduler"])
    if "inference_cfg_rate" in content:
        try:
            values["inference_cfg_rate"] = float(content["inference_cfg_rate"])
        except (TypeError, ValueError) as err:
            raise ConfigError("flow.decoder.cfm_params.inference_cfg_rate = "
                              f"{content['inference_cfg_rate']!r} is not a number") from err
    return values


def tiny_flow_config() -> FlowConfig:
    """Tiny random-test configuration of doc/model.md §12.4 (same module names, tiny widths)."""
    return FlowConfig(
        input_size=16, vocab_size=32,
        encoder=ConformerConfig(input_size=16, output_size=16, attention_heads=2,
                                linear_units=32, num_blocks=1),
        regulator_stages=1,
        estimator=EstimatorConfig(channels=(16, 16), attention_head_dim=8, n_blocks=1,
                                  num_mid_blocks=1, num_heads=2),
        n_timesteps=2)


@dataclass(frozen=True)
class GridPart:
    """Frames from `first_frame` on read units `first_unit`..`last_unit` at `scale` units/frame."""

    first_unit: int
    last_unit: int
    first_frame: int
    scale: float


@dataclass(frozen=True)
class FrameGrid:
    """Where each absolute mel frame reads the unit sequence (the length regulator's lerp).

    Each part is torch's linear interpolation (align_corners False) of its own units onto its
    frames, so a grid built by :meth:`Flow.offline_grid` reproduces offline synthesis exactly,
    and any window of frames can be placed on it without shifting.
    """

    parts: tuple[GridPart, ...]

    def sources(self, first_frame: int, end_frame: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]:
        """(lower unit, upper unit, weight of the upper) per frame of [first_frame, end_frame)."""
        frames = torch.arange(first_frame, end_frame)
        lower = torch.zeros(len(frames), dtype=torch.long)
        upper, weight = torch.zeros_like(lower), torch.zeros(len(frames))
        for part in self.parts:
            at = frames >= part.first_frame
            scale = torch.tensor(part.scale, dtype=torch.float32)  # float32 as torch's kernel
            source = (scale * ((frames[at] - part.first_frame).float() + 0.5) - 0.5).clamp(min=0)
            index = source.long()
            below = (part.first_unit + index).clamp(max=part.last_unit)
            lower[at], upper[at] = below, (below + 1).clamp(max=part.last_unit)
            weight[at] = torch.where(upper[at] > below, source - index.float(), 0.0)
        return lower, upper, weight


class InterpolateRegulator(nn.Module):
    """Linear interpolation of encoder frames to mel frames, then (conv, GroupNorm, Mish) x k."""

    def __init__(self, channels: int, stages: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(stages):
            layers += [nn.Conv1d(channels, channels, 3, 1, 1), nn.GroupNorm(1, channels),
                       nn.Mish()]
        layers.append(nn.Conv1d(channels, channels, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, h: torch.Tensor, mel_frames: int, edge_units: int, edge_frames: int
                ) -> torch.Tensor:
        """h [1, C, N] -> [1, C, mel_frames]; long inputs keep head/tail edges separate."""
        middle_frames = mel_frames - 2 * edge_frames
        if h.shape[-1] > 2 * edge_units and middle_frames > 0:
            # as CosyVoice: clean boundaries at the chunk edges used by streaming cross-fades
            parts = (h[:, :, :edge_units], h[:, :, edge_units:-edge_units],
                     h[:, :, -edge_units:])
            sizes = (edge_frames, middle_frames, edge_frames)
            h = torch.cat([F.interpolate(p, size=s, mode="linear")
                           for p, s in zip(parts, sizes)], dim=2)  # [1, C, M]
        else:
            h = F.interpolate(h, size=mel_frames, mode="linear")  # [1, C, M]
        return self.model(h)


class ConditionalCFM(nn.Module):
    """Holds the estimator as ``decoder.estimator`` and integrates the flow ODE."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.estimator = ConditionalDecoder(cfg.estimator)

    def time_grid(self, n_timesteps: int, like: torch.Tensor) -> torch.Tensor:
        """Times t_0..t_n [n+1] from 0 to 1 (cosine: 1 - cos(pi/2 * i/n))."""
        t = torch.linspace(0, 1, n_timesteps + 1, device=like.device, dtype=like.dtype)
        return 1 - torch.cos(t * 0.5 * math.pi) if self.cfg.t_scheduler == "cosine" else t

    def forward(self, mu: torch.Tensor, spk: torch.Tensor, noise: torch.Tensor,
                n_timesteps: int, cfg_rate: float) -> torch.Tensor:
        """Euler-integrate from noise [1, C, M]; CFG rows (cond, uncond) run as one batch."""
        C = mu.shape[1]
        t_span = self.time_grid(n_timesteps, mu)
        t_emb = self.estimator.embed_time(t_span[:-1])  # [n, E], once for all steps
        dts = t_span[1:] - t_span[:-1]
        rows = 2 if cfg_rate > 0 else 1
        # estimator input [x | mu | spk | cond]; the unconditional row keeps zeros there
        h = mu.new_zeros(rows, 4 * C, mu.shape[-1])
        h[0, C:2 * C] = mu[0]
        h[0, 2 * C:3 * C] = spk[0, :, None]
        x = noise
        for i in range(n_timesteps):
            h[:, :C] = x
            v = self.estimator(h, t_emb[i:i + 1].expand(rows, -1))  # [rows, C, M]
            if rows == 2:
                v = (1.0 + cfg_rate) * v[:1] - cfg_rate * v[1:]
            x = x + dts[i] * v
        return x


class Flow(nn.Module):
    """Units -> mel (CosyVoice MaskedDiffWithXvec, inference only, batch 1, no prompt)."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.input_embedding = nn.Embedding(cfg.vocab_size, cfg.input_size)
        self.spk_embed_affine_layer = nn.Linear(cfg.spk_embed_dim, cfg.output_size)
        self.encoder = ConformerEncoder(cfg.encoder)
        self.encoder_proj = nn.Linear(cfg.encoder.output_size, cfg.output_size)
        self.length_regulator = InterpolateRegulator(cfg.output_size, cfg.regulator_stages)
        self.decoder = ConditionalCFM(cfg)

    def mel_frames_for(self, n_units: int) -> int:
        """Mel frames CosyVoice produces for n units: int(n / rate * 22050 / 256)."""
        return int(n_units / self.cfg.input_frame_rate * self.cfg.mel_rate / self.cfg.mel_hop)

    def offline_grid(self, n_units: int) -> FrameGrid:
        """The frame grid of offline synthesis of n units (head and tail edges apart)."""
        frames, edge = self.mel_frames_for(n_units), self.cfg.edge_units
        edge_frames = self.mel_frames_for(edge)
        if n_units <= 2 * edge or frames - 2 * edge_frames <= 0:
            return FrameGrid((GridPart(0, n_units - 1, 0, n_units / frames),))
        middle_units, middle_frames = n_units - 2 * edge, frames - 2 * edge_frames
        return FrameGrid((GridPart(0, edge - 1, 0, edge / edge_frames),
                          GridPart(edge, n_units - edge - 1, edge_frames,
                                   middle_units / middle_frames),
                          GridPart(n_units - edge, n_units - 1, frames - edge_frames,
                                   edge / edge_frames)))

    def open_grid(self, n_units: int) -> FrameGrid:
        """The grid of the first n units of a longer sequence whose length is not known yet.

        The head edge is placed as offline places it; later units at the nominal rate (offline's
        middle part differs from it by under two frames over its whole length).
        """
        edge, edge_frames = self.cfg.edge_units, self.mel_frames_for(self.cfg.edge_units)
        nominal = self.cfg.input_frame_rate * self.cfg.mel_hop / self.cfg.mel_rate
        head = GridPart(0, min(edge, n_units) - 1, 0, edge / edge_frames)
        if n_units <= edge:
            return FrameGrid((head,))
        return FrameGrid((head, GridPart(edge, n_units - 1, edge_frames, nominal)))

    @torch.inference_mode()
    def encode_units(self, units: torch.Tensor) -> torch.Tensor:
        """Units [1, n] -> encoder output projected to mel channels [1, 80, n] (one per unit)."""
        self._check_units(units)
        h = self.encoder(self.input_embedding(units.to(self.input_embedding.weight.device)))
        return self.encoder_proj(h).transpose(1, 2)

    @torch.inference_mode()
    def mu_on_grid(self, encoded: torch.Tensor, first_unit: int, grid: FrameGrid,
                   first_frame: int, end_frame: int) -> torch.Tensor:
        """mu [1, 80, end - first] of grid frames; `encoded` holds the units from first_unit on."""
        lower, upper, weight = grid.sources(first_frame, end_frame)
        if int(lower.min()) < first_unit or int(upper.max()) >= first_unit + encoded.shape[-1]:
            raise InputError(f"frames [{first_frame}, {end_frame}) read units "
                             f"[{int(lower.min())}, {int(upper.max())}]; expected them within "
                             f"the encoded [{first_unit}, {first_unit + encoded.shape[-1]})")
        device = encoded.device
        weight = weight.to(device=device, dtype=encoded.dtype)
        h = (encoded[:, :, (lower - first_unit).to(device)] * (1 - weight)
             + encoded[:, :, (upper - first_unit).to(device)] * weight)
        return self.length_regulator.model(h)

    def make_noise(self, mel_frames: int, generator: torch.Generator) -> torch.Tensor:
        """Starting noise [1, C, mel_frames] drawn on the generator's device, then moved here."""
        weight = self.encoder_proj.weight
        noise = torch.randn(1, self.cfg.output_size, mel_frames, generator=generator,
                            device=generator.device, dtype=torch.float32)
        return noise.to(device=weight.device, dtype=weight.dtype)

    @torch.inference_mode()
    def units_to_mu(self, units: torch.Tensor, mel_frames: int | None = None) -> torch.Tensor:
        """Encode units [1, N] into the flow's condition mu [1, 80, M] (M from N by default)."""
        self._check_units(units)
        n_units = units.shape[1]
        mel_frames = self.mel_frames_for(n_units) if mel_frames is None else mel_frames
        if mel_frames < 1:
            raise InputError(f"mel_frames = {mel_frames} for {n_units} units; expected >= 1")
        ids = units.to(self.input_embedding.weight.device)
        h = self.encoder(self.input_embedding(ids))  # [1, N, D]
        h = self.encoder_proj(h).transpose(1, 2)  # [1, C, N]
        edge_frames = self.mel_frames_for(self.cfg.edge_units)
        return self.length_regulator(h, mel_frames, self.cfg.edge_units, edge_frames)

    @torch.inference_mode()
    def speaker_to_condition(self, embedding: torch.Tensor) -> torch.Tensor:
        """L2-normalise an x-vector [1, 192] and project it to the speaker condition [1, 80]."""
        expected = (1, self.cfg.spk_embed_dim)
        if not isinstance(embedding, torch.Tensor) or tuple(embedding.shape) != expected:
            got = tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else embedding
            raise InputError(f"speaker embedding has shape {got}; expected {list(expected)}")
        weight = self.spk_embed_affine_layer.weight
        embedding = embedding.to(device=weight.device, dtype=weight.dtype)
        return self.spk_embed_affine_layer(F.normalize(embedding, dim=1))

    @torch.inference_mode()
    def solve(self, mu: torch.Tensor, spk: torch.Tensor, noise: torch.Tensor,
              n_timesteps: int | None = None, cfg_rate: float | None = None) -> torch.Tensor:
        """Integrate noise [1, 80, M] to mel [1, 80, M] given mu and spk (None: config values)."""
        n_timesteps = self.cfg.n_timesteps if n_timesteps is None else n_timesteps
        cfg_rate = self.cfg.inference_cfg_rate if cfg_rate is None else cfg_rate
        C = self.cfg.output_size
        if mu.dim() != 3 or mu.shape[:2] != (1, C) or mu.shape[2] < 1:
            raise InputError(f"mu has shape {list(mu.shape)}; expected [1, {C}, M>=1]")
        if noise.shape != mu.shape:
            raise InputError(f"noise has shape {list(noise.shape)}; expected {list(mu.shape)}")
        if tuple(spk.shape) != (1, C):
            raise InputError(f"speaker condition has shape {list(spk.shape)}; expected [1, {C}]")
        if n_timesteps < 1:
            raise InputError(f"n_timesteps = {n_timesteps}; expected >= 1")
        return self.decoder(mu, spk, noise.to(mu), n_timesteps, cfg_rate)

    @torch.inference_mode()
    def inference(self, units: torch.Tensor, embedding: torch.Tensor,
                  generator: torch.Generator, n_timesteps: int | None = None) -> torch.Tensor:
        """Mel [1, 80, int(N/25*22050/256)] for units [1, N] and an x-vector [1, 192]."""
        spk = self.speaker_to_condition(embedding)
        mu = self.units_to_mu(units)
        noise = self.make_noise(mu.shape[-1], generator)
        return self.solve(mu, spk, noise, n_timesteps)

    def _check_units(self, units: torch.Tensor) -> None:
        if not isinstance(units, torch.Tensor):
            raise InputError(f"units must be a torch.Tensor of shape [1, N], got "
                             f"{type(units).__name__}")
        if units.dtype not in (torch.int64, torch.int32):
            raise InputError(f"units have dtype {units.dtype}; expected unit ids as "
                             "torch.int64 (or torch.int32)")
        if units.dim() != 2 or units.shape[0] != 1:
            raise InputError(f"units have shape {list(units.shape)}; expected [1, N]")
        if units.shape[1] == 0:
            raise InputError("no units: expected at least one unit id in [1, N]")
        low, high = torch.stack([units.min(), units.max()]).tolist()  # one host sync
        if low < 0 or high >= self.cfg.vocab_size:
            bad = low if low < 0 else high
            raise InputError(f"unit id {bad} is out of range; expected 0 <= id < "
                             f"{self.cfg.vocab_size} (flow vocab_size)")


def load_flow_weights(flow: Flow, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a flow.pt state dict strictly; CheckpointError lists missing/unexpected/misshapen."""
    load_state_strict(flow, state, source, "flow")
