"""Streaming unit -> waveform synthesis: feed units as they are generated, get PCM chunks.

Two stages, each working on an absolute time grid shared with offline synthesis:

* Mel stage. Mel frame f of the whole utterance is frame f of offline synthesis, with frame
  boundaries ``F(u) = int(u / 25 * 22050 / 256)``. A chunk runs the flow over a unit window
  (``left_context_units`` already-committed units + all units received) onto frames
  ``[F(a), F(U))``, with start noise taken from one seeded noise sequence addressed by absolute
  frame, so frames seen by two windows start from the same noise. The last
  ``mel_overlap_frames`` of a window stay provisional and are cross-faded (raised cosine) with the
  next window's estimate; all other frames are committed once.
* Audio stage. HiFT re-runs over the committed mel from ``hift_context_frames`` (>= its receptive
  field) before the first sample still to emit. The sine source's phase is anchored at a frame
  whose F0 was computed with full context and advanced from there, and its noise is addressed by
  absolute sample; so the streamed waveform equals offline HiFT of the same mel except within a
  receptive field of each seam. The last ``audio_overlap_frames`` stay provisional and are
  cross-faded with the next run.

Every committed frame and sample is emitted exactly once: no gaps, no repeats, and the total
length equals offline synthesis (256 * F(N)).

Deviations from CosyVoice's own ``token2wav`` streaming (spec 8.7), and why:
- first chunk after ``first_chunk_units`` (15 = 0.6 s) instead of 70 units, for latency;
  hops then grow from ``hop_units`` to ``max_hop_units`` to bound the flow's recomputation;
- the absolute frame grid replaces per-chunk ``int(n/25*22050/256)`` lengths, which drift from
  the offline length;
- noise is shared over all overlapping frames (CosyVoice re-uses only 34 frames, a constant for
  50 Hz units);
- instead of a 20-frame mel cache, replacing the start of the new source by the cached one and a
  5120-sample Hamming fade, HiFT gets receptive-field context and an anchored phase, so only a
  short fade is needed and seams carry no phase jump.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..errors import ConfigError, InputError
from .cosyvoice import CosyVoiceVocoder, RequestNoise, units_to_tensor

F0_CONTEXT_FRAMES = 5  # five k3 convolutions in the F0 predictor


@dataclass(frozen=True)
class StreamingConfig:
    """Chunking of streaming synthesis (units at 25 Hz, mel frames of 256 samples)."""

    first_chunk_units: int = 15  # units before the first chunk (0.6 s of speech)
    hop_units: int = 25  # units between the first and second chunk ...
    max_hop_units: int = 50  # ... growing by hop_growth per chunk up to this
    hop_growth: float = 2.0
    left_context_units: int = 20  # committed units the flow re-reads for context
    mel_overlap_frames: int = 12  # provisional mel frames cross-faded with the next window
    audio_overlap_frames: int = 8  # provisional audio frames (x256 samples), cross-faded
    hift_context_frames: int | None = None  # None: HiFT's receptive-field bound

    def __post_init__(self) -> None:
        for name in ("first_chunk_units", "hop_units", "max_hop_units"):
            if getattr(self, name) < 1:
                raise ConfigError(f"streaming {name} = {getattr(self, name)}; expected >= 1")
        for name in ("left_context_units", "mel_overlap_frames", "audio_overlap_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"streaming {name} = {getattr(self, name)}; expected >= 0")
        context = self.hift_context_frames
        if context is not None and context < 2 * F0_CONTEXT_FRAMES:
            raise ConfigError(f"streaming hift_context_frames = {self.hift_context_frames}; "
                              f"expected >= {2 * F0_CONTEXT_FRAMES} (F0 predictor reach, twice)")
        if self.hop_growth < 1.0:
            raise ConfigError(f"streaming hop_growth = {self.hop_growth}; expected >= 1")

    def hop_after(self, chunks: int) -> int:
        """Units to wait for before the chunk that follows `chunks` emitted chunks."""
        if chunks == 0:
            return self.first_chunk_units
        return min(self.max_hop_units, math.ceil(self.hop_units * self.hop_growth ** (chunks - 1)))


def _fade_in(length: int, like: torch.Tensor) -> torch.Tensor:
    """Raised-cosine ramp (0, 1) of `length` points; with its complement it sums to 1."""
    position = (torch.arange(length, device=like.device, dtype=torch.float32) + 0.5) / length
    return (0.5 - 0.5 * torch.cos(math.pi * position)).to(like.dtype)


def _cross_fade(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Blend old [..., n] into the start of new [..., T >= n] along the last axis."""
    n = min(old.shape[-1], new.shape[-1])
    if n == 0:
        return new
    ramp = _fade_in(n, new)
    blended = new.clone()
    blended[..., :n] = old[..., :n].to(new) * (1 - ramp) + new[..., :n] * ramp
    return blended


class _MelStream:
    """Units -> committed mel frames on the absolute frame grid."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig, spk: torch.Tensor,
                 noise: RequestNoise) -> None:
        self.vocoder, self.config, self.spk, self.noise = vocoder, config, spk, noise
        self.committed = 0  # frames [0, committed) are final
        self.provisional = torch.zeros(1, vocoder.flow.cfg.output_size, 0)

    def step(self, units: torch.Tensor, final: bool) -> torch.Tensor:
        """Run the flow over the window ending at the last unit; return newly final frames."""
        total = self.vocoder.mel_frames_for(units.shape[1])
        frames_per_unit = total / units.shape[1]
        first_unit = max(0, int(self.committed / frames_per_unit)
                         - self.config.left_context_units)
        first_frame = self.vocoder.mel_frames_for(first_unit)
        first_frame = min(first_frame, self.committed)
        if total <= self.committed:
            return self.provisional[:, :, :0]
        mel = self.vocoder.units_to_mel(units[:, first_unit:], first_frame, total - first_frame,
                                        self.spk, self.noise)
        new = _cross_fade(self.provisional.to(mel), mel[:, :, self.committed - first_frame:])
        keep = new.shape[-1] if final else max(0, new.shape[-1] - self.config.mel_overlap_frames)
        self.provisional = new[:, :, keep:]
        self.committed += keep
        return new[:, :, :keep]


class _AudioStream:
    """Committed mel frames -> waveform samples, HiFT re-run with receptive-field context."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig,
                 noise: RequestNoise) -> None:
        self.hift, self.noise = vocoder.hift, noise
        self.context = (config.hift_context_frames if config.hift_context_frames is not None
                        else self.hift.cfg.context_frames)
        self.overlap = config.audio_overlap_frames
        self.frame_len = self.hift.cfg.samples_per_frame
        self.mel = torch.zeros(1, self.hift.cfg.in_channels, 0)
        self.mel_start = 0  # absolute frame of self.mel[..., 0]
        self.emitted = 0  # frames whose samples are out (final)
        self.anchor, self.anchor_phase = 0, noise.initial_phase  # exact source phase at a frame
        self.provisional = torch.zeros(0)

    @property
    def mel_end(self) -> int:
        """Absolute frame just past the committed mel received so far."""
        return self.mel_start + self.mel.shape[-1]

    @torch.inference_mode()
    def step(self, mel: torch.Tensor, final: bool) -> torch.Tensor:
        """Add committed mel [1, 80, k]; return the samples that became final."""
        self.mel = torch.cat([self.mel.to(mel), mel], dim=2)
        end = self.mel_end
        last = end if final else end - self.overlap
        if last <= self.emitted:
            return self.provisional[:0]
        start = max(0, self.emitted - self.context)
        window = self.mel[:, :, start - self.mel_start:]
        f0 = self.hift.predict_f0(window)  # [1, end - start]
        source = self.hift.m_source
        phase = source.advance_phase(self.anchor_phase, -f0[0, :self.anchor - start])
        noise = self.noise.source.take(start * self.frame_len, end * self.frame_len)
        wav = self.hift.synthesize(window, phase, noise.to(window), f0=f0)[0]
        new = _cross_fade(self.provisional, wav[(self.emitted - start) * self.frame_len:])
        keep = (last - self.emitted) * self.frame_len
        self.provisional = new[keep:]
        # F0 is exact only F0_CONTEXT_FRAMES away from an unfinished right edge
        exact_end = end - F0_CONTEXT_FRAMES
        if not final and exact_end > self.anchor:
            self.anchor_phase = source.advance_phase(
                self.anchor_phase, f0[0, self.anchor - start:exact_end - start])
            self.anchor = exact_end
        self.emitted = last
        drop = max(0, min(self.emitted - self.context, self.anchor) - self.mel_start)
        self.mel, self.mel_start = self.mel[:, :, drop:], self.mel_start + drop
        return new[:keep]


class StreamingSynthesizer:
    """Push units as they arrive; get float32 PCM chunks (22050 Hz) that play back to back."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig = StreamingConfig(),
                 speaker: str | None = None, seed: int | None = None) -> None:
        self.vocoder, self.config = vocoder, config
        noise = vocoder.request_noise(seed)
        self._mel = _MelStream(vocoder, config, vocoder.speaker_condition(speaker), noise)
        self._audio = _AudioStream(vocoder, config, noise)
        # Units stay on the host until a chunk needs them: a copy to the GPU per pushed unit
        # would wait for the device once per unit.
        self._units = torch.zeros(1, 0, dtype=torch.long)
        self._chunks = 0
        self._units_at_last_chunk = 0
        self._flushed = False

    @property
    def units_received(self) -> int:
        """Number of units pushed so far."""
        return self._units.shape[1]

    def push(self, units: Sequence[int] | np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Add units; return the chunks that are ready now (possibly none)."""
        if self._flushed:
            raise InputError("push() after flush(): start a new StreamingSynthesizer per "
                             "utterance")
        if len(units) == 0:
            return []
        ids = units_to_tensor(units, self.vocoder.flow.cfg.vocab_size, torch.device("cpu"))
        self._units = torch.cat([self._units, ids], dim=1)
        hop = self.config.hop_after(self._chunks)
        if self.units_received - self._units_at_last_chunk < hop:
            return []
        return self._emit(final=False)

    def flush(self) -> list[np.ndarray]:
        """End of the utterance: synthesise everything still pending."""
        if self._flushed:
            return []
        self._flushed = True
        if self.units_received == 0:
            return []
        return self._emit(final=True)

    @torch.inference_mode()
    def _emit(self, final: bool) -> list[np.ndarray]:
        self._units_at_last_chunk = self.units_received
        self._chunks += 1
        device = self.vocoder.hift.stft_window.device
        mel = self._mel.step(self._units.to(device), final)
        wav = self._audio.step(mel, final)
        if wav.numel() == 0:
            return []
        return [wav.float().cpu().numpy()]
