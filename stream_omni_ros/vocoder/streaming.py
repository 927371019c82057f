"""Streaming unit -> waveform synthesis: feed units as they are generated, get PCM chunks.

Two stages, each working on an absolute time grid shared with offline synthesis:

* Mel stage. Mel frame f of the whole utterance is frame f of offline synthesis, with frame
  boundaries ``F(u) = int(u / 25 * 22050 / 256)``. Each frame also reads the units where offline
  synthesis reads them: the length regulator's interpolation is evaluated on one grid of
  absolute frames (:meth:`Flow.open_grid`: the head edge as offline, later units at the nominal
  rate; the final window uses offline's own grid), so windows never shift against offline
  frames. A chunk runs the flow over frames from ``left_context_units`` before the first
  uncommitted frame up to the newest unit, with start noise taken from one seeded noise sequence
  addressed by absolute frame. Frames of the newest ``commit_lag_units`` wait for more right
  context; the ``mel_overlap_frames`` before them stay provisional and are cross-faded (raised
  cosine) with the next window's estimate; all other frames are committed once.
* Audio stage. HiFT re-runs over the committed mel from ``hift_context_frames`` (>= its receptive
  field) before the first sample still to emit. The sine source's phase is anchored at a frame
  whose F0 was computed with full context and advanced from there, and its noise is addressed by
  absolute sample; so the streamed waveform equals offline HiFT of the same mel except within a
  receptive field of each seam. The last ``audio_overlap_frames`` stay provisional and are
  cross-faded with the next run.

Every committed frame and sample is emitted exactly once: no gaps, no repeats, and the total
length equals offline synthesis (256 * F(N)).

Cost: hops grow from ``hop_units`` to ``max_hop_units`` and the flow window is at most
``left_context_units + max_hop_units`` (+ lag) units long, so compute grows linearly with the
answer. The flow of the random stand-in depends on far context (it has operations over the
whole sequence, such as GroupNorm over time): with 20 units of left context its worst chunk
lands at 0.30 relative L2 from offline mel, and still at 0.30 with 150 units. With 200 units of
context and hops growing to 400, an answer of up to about 16 s is streamed from its whole prefix
(0.14 worst, 0.11 overall on 400 units) and a 60 s one stays as close (0.14 / 0.05) at below
offline's real-size FLOPs (offline's attention over the whole answer costs more than bounded
windows). ``bench/vocoder_bench.py`` prints these figures.

Deviations from CosyVoice's own ``token2wav`` streaming (doc/model.md §11.14), and why:
- first chunk after ``first_chunk_units`` (15 = 0.6 s) instead of 70 units, for latency;
  hops then grow from ``hop_units`` to ``max_hop_units`` to bound the flow's recomputation;
- the absolute frame grid replaces per-chunk ``int(n/25*22050/256)`` lengths and per-chunk
  interpolation, which shift frames against offline ones;
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
    max_hop_units: int = 400  # ... growing by hop_growth per chunk up to this
    hop_growth: float = 2.0
    left_context_units: int = 200  # committed units the flow re-reads for context
    commit_lag_units: int = 3  # newest units whose frames wait for more right context
    mel_overlap_frames: int = 6  # provisional mel frames cross-faded with the next window
    audio_overlap_frames: int = 8  # provisional audio frames (x256 samples), cross-faded
    hift_context_frames: int | None = None  # None: HiFT's receptive-field bound
    per_window_grid: bool = False  # each window interpolated on its own grid (old behaviour)

    def __post_init__(self) -> None:
        for name in ("first_chunk_units", "hop_units", "max_hop_units"):
            if getattr(self, name) < 1:
                raise ConfigError(f"streaming {name} = {getattr(self, name)}; expected >= 1")
        for name in ("left_context_units", "commit_lag_units", "mel_overlap_frames",
                     "audio_overlap_frames"):
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


@dataclass(frozen=True)
class FlowRun:
    """One run of the flow: units through the encoder, frames through the estimator."""

    units: int
    frames: int


class _MelStream:
    """Units -> committed mel frames on the absolute frame grid."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig, spk: torch.Tensor,
                 noise: RequestNoise) -> None:
        self.vocoder, self.config, self.spk, self.noise = vocoder, config, spk, noise
        self.flow = vocoder.flow
        self.committed = 0  # frames [0, committed) are final
        self.provisional = torch.zeros(1, vocoder.flow.cfg.output_size, 0)
        self.runs: list[FlowRun] = []

    def step(self, units: torch.Tensor, final: bool) -> torch.Tensor:
        """Run the flow over the window ending at the last unit; return newly final frames."""
        n, frames_for = units.shape[1], self.vocoder.mel_frames_for
        end = frames_for(n)
        commit_end = end if final else frames_for(max(0, n - self.config.commit_lag_units))
        overlap = 0 if final else self.config.mel_overlap_frames
        if commit_end - overlap <= self.committed:
            return self.provisional[:, :, :0]
        if self.config.per_window_grid:
            first_frame, mel = self._window_on_own_grid(units, end)
        else:
            first_frame, mel = self._window_on_grid(units, end, final)
        mel = mel[:, :, :commit_end - first_frame]
        new = _cross_fade(self.provisional.to(mel), mel[:, :, self.committed - first_frame:])
        keep = new.shape[-1] - overlap
        self.provisional = new[:, :, keep:]
        self.committed += keep
        return new[:, :, :keep]

    def _window_on_grid(self, units: torch.Tensor, end: int, final: bool
                        ) -> tuple[int, torch.Tensor]:
        """Frames [first, end) of a window placed on the absolute grid, with left context."""
        n = units.shape[1]
        grid = self.flow.offline_grid(n) if final else self.flow.open_grid(n)
        context = self.vocoder.mel_frames_for(self.config.left_context_units)
        first_frame = max(0, self.committed - context)
        first_unit = int(grid.sources(first_frame, first_frame + 1)[0])
        encoded = self.flow.encode_units(units[:, first_unit:])
        mu = self.flow.mu_on_grid(encoded, first_unit, grid, first_frame, end)
        self.runs.append(FlowRun(n - first_unit, end - first_frame))
        return first_frame, self.vocoder.solve_mel(mu, first_frame, self.spk, self.noise)

    def _window_on_own_grid(self, units: torch.Tensor, end: int) -> tuple[int, torch.Tensor]:
        """The old windows: units from a unit boundary, interpolated onto their own frames."""
        frames_per_unit = end / units.shape[1]
        first_unit = max(0, int(self.committed / frames_per_unit)
                         - self.config.left_context_units)
        first_frame = min(self.vocoder.mel_frames_for(first_unit), self.committed)
        self.runs.append(FlowRun(units.shape[1] - first_unit, end - first_frame))
        return first_frame, self.vocoder.units_to_mel(units[:, first_unit:], first_frame,
                                                      end - first_frame, self.spk, self.noise)


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
        self.runs: list[int] = []  # mel frames of each HiFT run

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
        self.runs.append(window.shape[-1])
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


class MelStreamer:
    """Push units as they arrive; get the committed mel chunks ([1, 80, k]) that follow them."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig = StreamingConfig(),
                 speaker: str | None = None, noise: RequestNoise | None = None) -> None:
        self.vocoder, self.config = vocoder, config
        noise = vocoder.request_noise() if noise is None else noise
        self._mel = _MelStream(vocoder, config, vocoder.speaker_condition(speaker), noise)
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

    @property
    def runs(self) -> list[FlowRun]:
        """Every flow run so far (the work streaming did, for cost accounting)."""
        return list(self._mel.runs)

    def push(self, units: Sequence[int] | np.ndarray | torch.Tensor) -> list[torch.Tensor]:
        """Add units; return the mel chunks that are final now (possibly none)."""
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

    def flush(self) -> list[torch.Tensor]:
        """End of the utterance: every mel frame still pending."""
        if self._flushed:
            return []
        self._flushed = True
        if self.units_received == 0:
            return []
        return self._emit(final=True)

    @torch.inference_mode()
    def _emit(self, final: bool) -> list[torch.Tensor]:
        self._units_at_last_chunk = self.units_received
        self._chunks += 1
        device = self.vocoder.hift.stft_window.device
        mel = self._mel.step(self._units.to(device), final)
        return [mel] if mel.shape[-1] or final else []


class StreamingSynthesizer:
    """Push units as they arrive; get float32 PCM chunks (22050 Hz) that play back to back."""

    def __init__(self, vocoder: CosyVoiceVocoder, config: StreamingConfig = StreamingConfig(),
                 speaker: str | None = None, seed: int | None = None) -> None:
        self.vocoder, self.config = vocoder, config
        noise = vocoder.request_noise(seed)
        self._mel = MelStreamer(vocoder, config, speaker, noise)
        self._audio = _AudioStream(vocoder, config, noise)
        self._flushed = False

    @property
    def units_received(self) -> int:
        """Number of units pushed so far."""
        return self._mel.units_received

    @property
    def flow_runs(self) -> list[FlowRun]:
        """Every flow run so far (units encoded, frames estimated)."""
        return self._mel.runs

    @property
    def hift_runs(self) -> list[int]:
        """Mel frames of every HiFT run so far."""
        return list(self._audio.runs)

    def push(self, units: Sequence[int] | np.ndarray | torch.Tensor) -> list[np.ndarray]:
        """Add units; return the chunks that are ready now (possibly none)."""
        return self._audio_of(self._mel.push(units), final=False)

    def flush(self) -> list[np.ndarray]:
        """End of the utterance: synthesise everything still pending."""
        if self._flushed:
            return []
        self._flushed = True
        return self._audio_of(self._mel.flush(), final=True)

    @torch.inference_mode()
    def _audio_of(self, mels: list[torch.Tensor], final: bool) -> list[np.ndarray]:
        chunks = []
        for mel in mels:
            wav = self._audio.step(mel, final)
            if wav.numel():
                chunks.append(wav.float().cpu().numpy())
        return chunks
