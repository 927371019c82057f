"""CosyVoice-300M-25Hz unit vocoder: folder loader and offline synthesis (units -> 22050 Hz PCM).

Only ``cosyvoice.yaml`` (read without executing its tags), ``flow.pt``, ``hift.pt`` and
``spk2info.pt`` are used, as in Stream-Omni. All randomness (flow start noise, HiFT source phases
and noise) comes from :class:`RequestNoise`, which indexes noise by absolute mel frame / sample,
so chunked synthesis (streaming.py) reuses exactly the noise offline synthesis would use.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, InputError
from .flow import Flow, FlowConfig, load_flow_weights
from .hift import HiFTGenerator, HiftConfig
from .hparams import read_cosyvoice_yaml
from .weights import load_state_strict

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("cosyvoice.yaml", "flow.pt", "hift.pt", "spk2info.pt")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class VocoderOptions:
    """How to run the vocoder; the architecture itself comes from the folder."""

    device: str = "cpu"
    dtype: str = "float32"  # flow precision; HiFT always runs in float32 as in CosyVoice
    n_timesteps: int = 10
    speaker: str = "英文女"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ConfigError(f"vocoder dtype {self.dtype!r}; expected one of {list(_DTYPES)}")
        if self.n_timesteps < 1:
            raise ConfigError(f"vocoder n_timesteps {self.n_timesteps}; expected >= 1")


class SeededNoise:
    """Standard normal noise [1, C, T] addressed by absolute position, reproducible per seed."""

    def __init__(self, seed: int, stream: int, channels: int, device: torch.device,
                 block: int) -> None:
        self.seed, self.stream, self.channels = seed, stream, channels
        self.device, self.block = torch.device(device), block
        self._blocks: dict[int, torch.Tensor] = {}

    def _get_block(self, index: int) -> torch.Tensor:
        if index not in self._blocks:
            mixed = (self.seed * 0x9E3779B97F4A7C15 + self.stream * 0xBF58476D1CE4E5B9
                     + index * 0x94D049BB133111EB) % (2**63 - 1)
            generator = torch.Generator(device=self.device).manual_seed(mixed)
            self._blocks[index] = torch.randn(1, self.channels, self.block, generator=generator,
                                              device=self.device)
        return self._blocks[index]

    def take(self, start: int, stop: int) -> torch.Tensor:
        """Noise for positions [start, stop) as [1, C, stop - start] float32."""
        first, last = start // self.block, (stop - 1) // self.block
        for index in [i for i in self._blocks if i < first]:
            del self._blocks[index]  # streaming only moves forward
        joined = torch.cat([self._get_block(i) for i in range(first, last + 1)], dim=2)
        offset = start - first * self.block
        return joined[:, :, offset:offset + stop - start]


class RequestNoise:
    """All random inputs of one synthesis request, derived from its seed."""

    def __init__(self, seed: int, mel_channels: int, hift: HiFTGenerator) -> None:
        device = hift.stft_window.device
        self.flow = SeededNoise(seed, 1, mel_channels, device, block=256)
        self.source = SeededNoise(seed, 2, hift.cfg.nb_harmonics + 1, device, block=65536)
        generator = torch.Generator(device=device).manual_seed(seed)
        self.initial_phase = hift.initial_phase(generator)


class CosyVoiceVocoder:
    """Flow matching + HiFT loaded from a CosyVoice-300M-25Hz folder; batch 1, inference only."""

    def __init__(self, flow: Flow, hift: HiFTGenerator, speakers: Mapping[str, torch.Tensor],
                 options: VocoderOptions) -> None:
        if options.speaker not in speakers:
            raise ConfigError(f"speaker {options.speaker!r} is not in spk2info.pt; available: "
                              f"{sorted(speakers)}")
        self.flow, self.hift, self.options = flow, hift, options
        self.speakers = dict(speakers)
        self._conditions: dict[str, torch.Tensor] = {}

    @classmethod
    def load(cls, folder: str | Path, options: VocoderOptions = VocoderOptions()
             ) -> CosyVoiceVocoder:
        """Load cosyvoice.yaml, flow.pt, hift.pt and spk2info.pt from a CosyVoice folder."""
        folder = Path(folder)
        for name in REQUIRED_FILES:
            if not (folder / name).is_file():
                raise CheckpointError(f"{name} is missing from the CosyVoice folder {folder} "
                                      f"(expected {', '.join(REQUIRED_FILES)})")
        hparams = read_cosyvoice_yaml(folder / "cosyvoice.yaml")
        flow_cfg, hift_cfg = _configs_from_hparams(hparams, folder / "cosyvoice.yaml")
        flow, hift = Flow(flow_cfg), HiFTGenerator(hift_cfg)
        load_flow_weights(flow, _load_tensors(folder / "flow.pt"), str(folder / "flow.pt"))
        load_hift_weights(hift, _load_tensors(folder / "hift.pt"), str(folder / "hift.pt"))
        hift.fold_weight_norm()
        speakers = _load_speakers(folder / "spk2info.pt", flow_cfg.spk_embed_dim)
        flow.to(device=options.device, dtype=_DTYPES[options.dtype]).eval()
        hift.to(device=options.device).eval()
        logger.info("CosyVoice folder %s: flow input_frame_rate %d, vocab %d, speakers %s",
                    folder, flow_cfg.input_frame_rate, flow_cfg.vocab_size, sorted(speakers))
        return cls(flow, hift, speakers, options)

    @property
    def sample_rate(self) -> int:
        """Output sample rate in Hz (22050)."""
        return self.hift.cfg.sampling_rate

    @property
    def samples_per_frame(self) -> int:
        """Waveform samples per mel frame (256)."""
        return self.hift.cfg.samples_per_frame

    def mel_frames_for(self, n_units: int) -> int:
        """Mel frames for n units: int(n / 25 * 22050 / 256) in CosyVoice's float arithmetic."""
        return self.flow.mel_frames_for(n_units)

    def speaker_condition(self, speaker: str | None = None) -> torch.Tensor:
        """The flow's speaker condition [1, 80] for a spk2info.pt speaker (cached)."""
        name = self.options.speaker if speaker is None else speaker
        if name not in self.speakers:
            raise ConfigError(f"unknown speaker {name!r}; available: {sorted(self.speakers)}")
        if name not in self._conditions:
            self._conditions[name] = self.flow.speaker_to_condition(self.speakers[name])
        return self._conditions[name]

    def request_noise(self, seed: int | None = None) -> RequestNoise:
        """Random inputs of one request (seed None: the options' seed)."""
        seed = self.options.seed if seed is None else seed
        return RequestNoise(seed, self.flow.cfg.output_size, self.hift)

    def units_to_tensor(self, units: Sequence[int] | np.ndarray | torch.Tensor) -> torch.Tensor:
        """Validate unit ids and return them as a LongTensor [1, N] on the vocoder's device."""
        return units_to_tensor(units, self.flow.cfg.vocab_size, self.hift.stft_window.device)

    @torch.inference_mode()
    def units_to_mel(self, units: torch.Tensor, first_frame: int, mel_frames: int,
                     spk: torch.Tensor, noise: RequestNoise) -> torch.Tensor:
        """Mel [1, 80, mel_frames] for units [1, n] placed at absolute frame first_frame."""
        return self.solve_mel(self.flow.units_to_mu(units, mel_frames), first_frame, spk, noise)

    @torch.inference_mode()
    def solve_mel(self, mu: torch.Tensor, first_frame: int, spk: torch.Tensor,
                  noise: RequestNoise) -> torch.Tensor:
        """Mel [1, 80, M] from mu [1, 80, M] of frames first_frame.. (the request's noise)."""
        start = noise.flow.take(first_frame, first_frame + mu.shape[-1])
        return self.flow.solve(mu, spk, start, self.options.n_timesteps).float()

    @torch.inference_mode()
    def synthesize(self, units: Sequence[int] | np.ndarray | torch.Tensor,
                   speaker: str | None = None, seed: int | None = None) -> np.ndarray:
        """Offline synthesis: all units -> float32 PCM [256 * int(N/25*22050/256)] at 22050 Hz."""
        ids = self.units_to_tensor(units)
        spk = self.speaker_condition(speaker)
        noise = self.request_noise(seed)
        mel = self.units_to_mel(ids, 0, self.mel_frames_for(ids.shape[1]), spk, noise)
        source_noise = noise.source.take(0, mel.shape[-1] * self.samples_per_frame)
        wav = self.hift.synthesize(mel, noise.initial_phase, source_noise)
        return wav[0].cpu().numpy().astype(np.float32, copy=False)


def units_to_tensor(units: Sequence[int] | np.ndarray | torch.Tensor, vocab_size: int,
                    device: torch.device) -> torch.Tensor:
    """Check a 1-D sequence of unit ids (integers in [0, vocab_size)) -> LongTensor [1, N]."""
    if isinstance(units, torch.Tensor):
        if units.dtype.is_floating_point or units.dtype.is_complex or units.dtype == torch.bool:
            raise InputError(f"units have dtype {units.dtype}; expected integer unit ids")
        array = units.detach().cpu().numpy()
    else:
        array = np.asarray(units)
    if array.ndim != 1:
        raise InputError(f"units have shape {list(array.shape)}; expected a 1-D sequence of ids")
    if array.size == 0:
        raise InputError("no units: expected at least one unit id")
    if array.dtype.kind not in "iu":
        raise InputError(f"units have dtype {array.dtype}; expected integer unit ids in "
                         f"[0, {vocab_size})")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise InputError(f"unit id {bad} is outside the codebook; expected 0 <= id < "
                         f"{vocab_size}")
    return torch.from_numpy(array.astype(np.int64))[None].to(device)


HIFT_KEY_PREFIX = "generator."  # hift.pt files saved from the training wrapper carry it


def load_hift_weights(hift: HiFTGenerator, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a hift.pt state dict strictly, with or without the ``generator.`` key prefix."""
    load_state_strict(hift, strip_hift_prefix(state, source), source, "HiFT")


def strip_hift_prefix(state: Mapping[str, torch.Tensor], source: str
                      ) -> Mapping[str, torch.Tensor]:
    """Keys without a leading ``generator.``, as CosyVoice's own HiFT loader reads them."""
    if not any(key.startswith(HIFT_KEY_PREFIX) for key in state):
        return state
    stripped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len(HIFT_KEY_PREFIX):] if key.startswith(HIFT_KEY_PREFIX) else key
        if name in stripped:
            raise CheckpointError(f"{source} holds both {name!r} and {HIFT_KEY_PREFIX + name!r}; "
                                  "expected each HiFT weight once")
        stripped[name] = value
    return stripped


def _configs_from_hparams(hparams: dict, path: Path) -> tuple[FlowConfig, HiftConfig]:
    for section in ("flow", "hift"):
        if not isinstance(hparams.get(section), dict):
            raise CheckpointError(f"{path} has no '{section}:' mapping; expected a "
                                  "CosyVoice-300M-25Hz cosyvoice.yaml")
    flow_cfg = FlowConfig.from_hparams(hparams["flow"])
    hift_cfg = HiftConfig.from_hparams(hparams["hift"])
    if flow_cfg.input_frame_rate != 25:
        raise CheckpointError(f"{path}: flow.input_frame_rate is {flow_cfg.input_frame_rate}; "
                              "Stream-Omni's units are 25 Hz, use the CosyVoice-300M-25Hz folder")
    if hift_cfg.samples_per_frame != flow_cfg.mel_hop or hift_cfg.in_channels != \
            flow_cfg.output_size or hift_cfg.sampling_rate != flow_cfg.mel_rate:
        raise CheckpointError(f"{path}: HiFT (in_channels {hift_cfg.in_channels}, "
                              f"{hift_cfg.samples_per_frame} samples per frame at "
                              f"{hift_cfg.sampling_rate} Hz) does not fit the flow's "
                              f"{flow_cfg.output_size}-bin mel with hop {flow_cfg.mel_hop} "
                              f"at {flow_cfg.mel_rate} Hz")
    return flow_cfg, hift_cfg


def _load_tensors(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt zip, pickle refused by weights_only, ...
        raise CheckpointError(f"cannot read {path} as a weights-only torch file: {error}") \
            from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}; expected a state dict")
    return state


def _load_speakers(path: Path, width: int) -> dict[str, torch.Tensor]:
    info = _load_tensors(path)
    speakers = {}
    for name, entry in info.items():
        embedding = entry.get("embedding") if isinstance(entry, dict) else None
        if not isinstance(embedding, torch.Tensor) or embedding.numel() != width:
            raise CheckpointError(f"{path}: speaker {name!r} has no 'embedding' tensor of "
                                  f"{width} values (flow spk_embed_dim)")
        speakers[str(name)] = embedding.reshape(1, width).float()
    if not speakers:
        raise CheckpointError(f"{path} lists no speakers")
    return speakers
