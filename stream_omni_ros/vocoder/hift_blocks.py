"""Building blocks of the HiFT vocoder: weight-norm convolutions, Snake residual blocks, the F0
predictor and the harmonic-plus-noise source module (names follow the released ``hift.pt``)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

class WeightNormConv1d(nn.Module):
    """Conv1d / ConvTranspose1d whose weight is ``weight_g * weight_v / ||weight_v||`` (dim 0)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, transposed: bool = False) -> None:
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.transposed = transposed
        shape = ((in_channels, out_channels, kernel_size) if transposed
                 else (out_channels, in_channels, kernel_size))
        self.weight_v = nn.Parameter(torch.randn(shape) * 0.01)
        self.weight_g = nn.Parameter(self.weight_v.detach().norm(dim=(1, 2), keepdim=True))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("folded_weight", None, persistent=False)

    def normalized_weight(self) -> torch.Tensor:
        """The effective weight computed from weight_g and weight_v."""
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=(1, 2), keepdim=True)

    def fold(self) -> None:
        """Cache the effective weight; call again after changing weight_g / weight_v."""
        with torch.no_grad():
            self.folded_weight = self.normalized_weight().detach()

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self.folded_weight = None  # stale once new g / v arrive
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve x [B, C_in, T]."""
        weight = self.folded_weight if self.folded_weight is not None else self.normalized_weight()
        if self.transposed:
            return F.conv_transpose1d(x, weight, self.bias, self.stride, self.padding)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class Snake(nn.Module):
    """Snake activation x + sin(alpha x)^2 / alpha with a learned alpha per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply to x [B, C, T]."""
        alpha = self.alpha[None, :, None]
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


class ResBlock(nn.Module):
    """HiFi-GAN residual block with Snake activations and dilated weight-norm convolutions."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=d * (kernel_size - 1) // 2,
                             dilation=d) for d in dilations)
        self.convs2 = nn.ModuleList(
            WeightNormConv1d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2)
            for _ in dilations)
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual stack over x [B, C, T]."""
        for conv1, conv2, act1, act2 in zip(self.convs1, self.convs2, self.activations1,
                                            self.activations2):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class ConvRNNF0Predictor(nn.Module):
    """F0 (Hz) per mel frame: five weight-norm k3 convolutions with ELU, a linear head, abs."""

    def __init__(self, in_channels: int, cond_channels: int, num_class: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(5):
            layers += [WeightNormConv1d(in_channels if index == 0 else cond_channels,
                                        cond_channels, 3, padding=1), nn.ELU()]
        self.condnet = nn.Sequential(*layers)
        self.classifier = nn.Linear(cond_channels, num_class)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B, 80, M] -> f0 [B, M]."""
        h = self.condnet(mel).transpose(1, 2)  # [B, M, cond]
        return self.classifier(h).squeeze(-1).abs()


class SourceModuleHnNSF(nn.Module):
    """Harmonic-plus-noise excitation from F0, merged to one channel by ``l_linear`` + tanh."""

    def __init__(self, nb_harmonics: int, sampling_rate: int, samples_per_frame: int,
                 alpha: float, sigma: float, voiced_threshold: float) -> None:
        super().__init__()
        self.sampling_rate, self.samples_per_frame = sampling_rate, samples_per_frame
        self.alpha, self.sigma, self.voiced_threshold = alpha, sigma, voiced_threshold
        self.l_linear = nn.Linear(nb_harmonics + 1, 1)
        harmonics = torch.arange(1, nb_harmonics + 2, dtype=torch.float64)
        self.register_buffer("harmonics", harmonics, persistent=False)

    def cycles_per_sample(self, f0: torch.Tensor) -> torch.Tensor:
        """f0 [M] (Hz) -> phase increment per sample [H, M] in cycles, float64."""
        return self.harmonics[:, None] * f0.double()[None, :] / self.sampling_rate

    def advance_phase(self, phase: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        """Phase [H] (cycles) after the frames of f0 [M]; negative-time use gives the inverse."""
        increments = self.cycles_per_sample(f0).sum(dim=1) * self.samples_per_frame
        return torch.remainder(phase + increments, 1.0)

    def forward(self, f0: torch.Tensor, phase: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """f0 [1, M], phase [H] at frame 0 (cycles), noise [1, H, S*M] -> source [1, 1, S*M]."""
        frame_len = self.samples_per_frame
        step = self.cycles_per_sample(f0[0])  # [H, M]
        start = phase[:, None] + frame_len * (torch.cumsum(step, dim=1) - step)
        start = torch.remainder(start, 1.0).float()  # [H, M] phase before each frame
        ramp = torch.arange(1, frame_len + 1, device=f0.device, dtype=torch.float32)
        cycles = start[:, :, None] + step.float()[:, :, None] * ramp  # [H, M, S]
        sine = self.alpha * torch.sin(2 * math.pi * cycles).flatten(1)  # [H, M*S]
        voiced = (f0[0] > self.voiced_threshold).to(noise.dtype)
        voiced = voiced.repeat_interleave(frame_len)[None, :]  # [1, M*S]
        noise_amp = voiced * self.sigma + (1 - voiced) * self.alpha / 3
        excitation = sine.to(noise.dtype) * voiced + noise_amp * noise[0]  # [H, M*S]
        return torch.tanh(self.l_linear(excitation.T[None]))[:, None, :, 0]  # [1, 1, M*S]
