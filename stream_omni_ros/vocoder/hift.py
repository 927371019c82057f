"""HiFT vocoder (CosyVoice's HiFTGenerator): 80-bin mel at 22050 Hz -> waveform.

A neural source filter (predicted F0 -> harmonic sine excitation) feeding an iSTFTNet. Attribute
paths equal the keys of the released ``hift.pt``, which stores weight norm in the old
``weight_g`` / ``weight_v`` form; :meth:`HiFTGenerator.fold_weight_norm` turns them into plain
weights once after loading so inference pays nothing for the parametrisation.

The excitation is computed from explicit state (phase per harmonic at the first frame, and noise
passed in) instead of drawing from a global RNG, so chunked synthesis can continue the exact
phase and noise sequence of offline synthesis.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .hift_blocks import ConvRNNF0Predictor, ResBlock, SourceModuleHnNSF, WeightNormConv1d
from .hparams import dataclass_values

__all__ = ["HiftConfig", "tiny_hift_config", "HiFTGenerator", "WeightNormConv1d"]


# yaml path (under the ``hift:`` mapping) of every HiftConfig field that differs from its name
_HPARAM_PATHS = {
    "istft_n_fft": ("istft_params", "n_fft"),
    "istft_hop_len": ("istft_params", "hop_len"),
    "f0_num_class": ("f0_predictor", "num_class"),
    "f0_in_channels": ("f0_predictor", "in_channels"),
    "f0_cond_channels": ("f0_predictor", "cond_channels"),
}


@dataclass(frozen=True)
class HiftConfig:
    """HiFTGenerator hyperparameters; defaults are CosyVoice-300M-25Hz's."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 22050
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: tuple[int, ...] = (8, 8)
    upsample_kernel_sizes: tuple[int, ...] = (16, 16)
    istft_n_fft: int = 16
    istft_hop_len: int = 4
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    source_resblock_kernel_sizes: tuple[int, ...] = (7, 11)
    source_resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5))
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    f0_num_class: int = 1
    f0_in_channels: int = 80
    f0_cond_channels: int = 512

    def __post_init__(self) -> None:
        stages = len(self.upsample_rates)
        if not (len(self.upsample_kernel_sizes) == len(self.source_resblock_kernel_sizes)
                == len(self.source_resblock_dilation_sizes) == stages):
            raise ConfigError(f"hift: upsample_rates {self.upsample_rates}, upsample_kernel_sizes"
                              f" {self.upsample_kernel_sizes} and source_resblock_* must have "
                              "one entry per upsampling stage")
        if len(self.resblock_kernel_sizes) != len(self.resblock_dilation_sizes):
            raise ConfigError("hift: resblock_kernel_sizes and resblock_dilation_sizes differ in "
                              "length")
        if self.f0_num_class != 1:
            raise ConfigError(f"hift.f0_predictor.num_class is {self.f0_num_class}, expected 1")

    @property
    def samples_per_frame(self) -> int:
        """Waveform samples per mel frame (256 for CosyVoice)."""
        return math.prod(self.upsample_rates) * self.istft_hop_len

    @property
    def context_frames(self) -> int:
        """Mel frames on each side that can influence a sample (a safe upper bound)."""
        rate, reach = 1, 5 + 3  # five k3 F0 convolutions; conv_pre k7
        stages = zip(self.upsample_rates, self.upsample_kernel_sizes,
                     self.source_resblock_kernel_sizes, self.source_resblock_dilation_sizes)
        for up, kernel, source_kernel, source_dilations in stages:
            reach += math.ceil(kernel / up) / rate
            rate *= up
            reach += (_resblock_reach(source_kernel, source_dilations) + 2 * self.istft_n_fft
                      + max(_resblock_reach(k, d) for k, d in
                            zip(self.resblock_kernel_sizes, self.resblock_dilation_sizes))) / rate
        return math.ceil(reach + (3 + self.istft_n_fft) / rate) + 2

    @classmethod
    def from_hparams(cls, hift: dict) -> HiftConfig:
        """Build from the ``hift:`` mapping of a safely read cosyvoice.yaml."""
        return cls(**dataclass_values(cls, hift, "hift", _HPARAM_PATHS))


def _resblock_reach(kernel: int, dilations: tuple[int, ...]) -> int:
    return sum((kernel - 1) * d // 2 + (kernel - 1) // 2 for d in dilations)


def tiny_hift_config() -> HiftConfig:
    """The tiny test configuration of doc/model.md §12.4 (still 256 samples per frame)."""
    return HiftConfig(base_channels=16, nb_harmonics=1, resblock_kernel_sizes=(3,),
                      resblock_dilation_sizes=((1,),), source_resblock_kernel_sizes=(3, 3),
                      source_resblock_dilation_sizes=((1,), (1,)), f0_cond_channels=16)


class HiFTGenerator(nn.Module):
    """CosyVoice HiFT: mel [1, 80, M] -> waveform [1, 256*M] at 22050 Hz."""

    def __init__(self, cfg: HiftConfig) -> None:
        super().__init__()
        self.cfg = cfg
        base, n_fft = cfg.base_channels, cfg.istft_n_fft
        self.m_source = SourceModuleHnNSF(cfg.nb_harmonics, cfg.sampling_rate,
                                          cfg.samples_per_frame, cfg.nsf_alpha, cfg.nsf_sigma,
                                          cfg.nsf_voiced_threshold)
        self.conv_pre = WeightNormConv1d(cfg.in_channels, base, 7, padding=3)
        self.ups = nn.ModuleList(
            WeightNormConv1d(base // 2**i, base // 2**(i + 1), k, stride=u, padding=(k - u) // 2,
                             transposed=True)
            for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)))
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (kernel, dilations) in enumerate(zip(cfg.source_resblock_kernel_sizes,
                                                    cfg.source_resblock_dilation_sizes)):
            rate = math.prod(cfg.upsample_rates[i + 1:])  # stft frames per feature step
            channels = base // 2**(i + 1)
            down = (nn.Conv1d(n_fft + 2, channels, 1) if rate == 1 else
                    nn.Conv1d(n_fft + 2, channels, rate * 2, rate, padding=rate // 2))
            self.source_downs.append(down)
            self.source_resblocks.append(ResBlock(channels, kernel, dilations))
        self.resblocks = nn.ModuleList(
            ResBlock(base // 2**(i + 1), kernel, dilations)
            for i in range(len(cfg.upsample_rates))
            for kernel, dilations in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
        self.conv_post = WeightNormConv1d(base // 2**len(cfg.upsample_rates), n_fft + 2, 7,
                                          padding=3)
        self.f0_predictor = ConvRNNF0Predictor(cfg.f0_in_channels, cfg.f0_cond_channels,
                                               cfg.f0_num_class)
        window = torch.hann_window(n_fft, periodic=True)
        self.register_buffer("stft_window", window, persistent=False)

    def fold_weight_norm(self) -> None:
        """Precompute every weight-norm weight (after loading, before inference)."""
        for module in self.modules():
            if isinstance(module, WeightNormConv1d):
                module.fold()

    def initial_phase(self, generator: torch.Generator) -> torch.Tensor:
        """Random start phase per harmonic [H] in cycles (0 for the fundamental), float64."""
        count = self.cfg.nb_harmonics + 1
        phase = torch.rand(count, generator=generator, dtype=torch.float64,
                           device=generator.device) - 0.5
        phase[0] = 0.0
        return phase.to(self.stft_window.device)

    def predict_f0(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [1, 80, M] -> f0 [1, M] in Hz."""
        return self.f0_predictor(mel)

    def decode(self, mel: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """mel [1, 80, M] and source [1, 1, S*M] -> waveform [1, S*M]."""
        cfg, n_fft, hop = self.cfg, self.cfg.istft_n_fft, self.cfg.istft_hop_len
        spec = torch.stft(source[:, 0], n_fft, hop, n_fft, window=self.stft_window,
                          return_complex=True)  # [1, n_fft/2+1, S*M/hop+1]
        s = torch.cat([spec.real, spec.imag], dim=1)  # [1, n_fft+2, frames]
        x = self.conv_pre(mel)
        kernels = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](s))
            x = sum(block(x) for block in self.resblocks[i * kernels:(i + 1) * kernels]) / kernels
        x = self.conv_post(F.leaky_relu(x))  # PyTorch's default slope here, as in CosyVoice
        magnitude = torch.exp(x[:, :n_fft // 2 + 1]).clamp(max=1e2)
        phase = torch.sin(x[:, n_fft // 2 + 1:])
        spectrum = torch.polar(magnitude, phase)
        wav = torch.istft(spectrum, n_fft, hop, n_fft, window=self.stft_window)
        return wav.clamp(-cfg.audio_limit, cfg.audio_limit)

    def synthesize(self, mel: torch.Tensor, phase: torch.Tensor,
                   noise: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """mel [1, 80, M] with explicit excitation state -> waveform [1, S*M]."""
        f0 = self.predict_f0(mel) if f0 is None else f0
        return self.decode(mel, self.m_source(f0, phase, noise))

    def mel_to_waveform(self, mel: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """mel [1, 80, M] -> waveform [1, 256*M]; phases and noise drawn from generator."""
        samples = mel.shape[-1] * self.cfg.samples_per_frame
        noise = torch.randn(1, self.cfg.nb_harmonics + 1, samples, generator=generator,
                            device=generator.device).to(mel)
        return self.synthesize(mel, self.initial_phase(generator), noise)

