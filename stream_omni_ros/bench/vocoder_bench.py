"""Benchmark the unit vocoder: real-time factor and first-chunk latency, offline vs streaming,
and how close streamed speech stays to offline speech, for the old and the current settings.

    python -m stream_omni_ros.bench.vocoder_bench [--device cpu|cuda] [--size tiny|full]
        [--units N] [--closeness-units N] [--cost-units N]

``full`` builds the real CosyVoice-300M-25Hz shapes with random weights (no download needed);
``tiny`` writes and loads the tiny test folder. Random weights cost the same time as real ones.

Closeness: the streamed mel against offline mel of the same units with the same noise, as a
relative L2 (``|streamed - offline| / |offline|``) per emitted chunk (worst) and over the whole
utterance (overall). Cost: streaming's compute over offline's, counted in floating-point
operations of the real-size flow and HiFT for the runs streaming made (so it does not depend on
the machine or on the stand-in's tiny widths), and as measured time on this machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import tempfile
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.flow import Flow, FlowConfig
from stream_omni_ros.vocoder.hift import HiFTGenerator, HiftConfig
from stream_omni_ros.vocoder.streaming import (FlowRun, MelStreamer, StreamingConfig,
                                              StreamingSynthesizer)
from stream_omni_ros.vocoder.tiny_cosyvoice import TINY_SPEAKER, write_tiny_cosyvoice

# The settings before the absolute frame grid: short left context, every window interpolated on
# its own grid, frames committed up to the newest unit, hops capped at 2 s.
OLD_STREAMING = StreamingConfig(left_context_units=20, commit_lag_units=0, mel_overlap_frames=12,
                                max_hop_units=50, per_window_grid=True)
# Points of the closeness / cost frontier printed next to the old and current settings.
FRONTIER = {
    "old": OLD_STREAMING,
    "grid": dataclasses.replace(OLD_STREAMING, per_window_grid=False),
    "grid+lag": dataclasses.replace(OLD_STREAMING, per_window_grid=False, commit_lag_units=3,
                                    mel_overlap_frames=6),
    "ctx100/200": StreamingConfig(left_context_units=100, max_hop_units=200),
    "ctx200/200": StreamingConfig(left_context_units=200, max_hop_units=200),
    "current": StreamingConfig(),
    "whole": StreamingConfig(left_context_units=1_000_000, max_hop_units=1_000_000),
}


@dataclass(frozen=True)
class BenchResult:
    """Timings of one synthesis run."""

    seconds: float
    audio_seconds: float
    first_chunk_seconds: float | None
    flow_runs: tuple[FlowRun, ...] = ()  # streaming only: what each chunk computed
    hift_runs: tuple[int, ...] = ()

    @property
    def real_time_factor(self) -> float:
        """Compute time per second of audio (below 1 is faster than real time)."""
        return self.seconds / self.audio_seconds


def build_vocoder(size: str, options: VocoderOptions) -> CosyVoiceVocoder:
    """A vocoder with random weights: the tiny test folder or the real shapes."""
    if size == "tiny":
        folder = write_tiny_cosyvoice(tempfile.mkdtemp(prefix="cosyvoice_tiny_"))
        return CosyVoiceVocoder.load(folder, options)
    flow, hift = Flow(FlowConfig()), HiFTGenerator(HiftConfig())
    hift.fold_weight_norm()
    dtype = {"float32": torch.float32, "float16": torch.float16,
             "bfloat16": torch.bfloat16}[options.dtype]
    flow.to(device=options.device, dtype=dtype).eval()
    hift.to(device=options.device).eval()
    return CosyVoiceVocoder(flow, hift, {TINY_SPEAKER: torch.randn(1, 192)}, options)


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_offline(vocoder: CosyVoiceVocoder, units: list[int]) -> BenchResult:
    """Synthesize all units at once."""
    _synchronize(vocoder.options.device)
    start = time.perf_counter()
    wav = vocoder.synthesize(units)
    seconds = time.perf_counter() - start
    return BenchResult(seconds, len(wav) / vocoder.sample_rate, None)


def time_streaming(vocoder: CosyVoiceVocoder, units: list[int],
                   config: StreamingConfig) -> BenchResult:
    """Push units one at a time (as fast as they come) and time the chunks."""
    _synchronize(vocoder.options.device)
    start = time.perf_counter()
    stream = StreamingSynthesizer(vocoder, config)
    chunks: list[np.ndarray] = []
    first_chunk = None
    for unit in units:
        pushed_at = time.perf_counter()
        ready = stream.push([unit])
        if ready and first_chunk is None:
            first_chunk = time.perf_counter() - pushed_at
        chunks += ready
    chunks += stream.flush()
    seconds = time.perf_counter() - start
    samples = sum(len(chunk) for chunk in chunks)
    return BenchResult(seconds, samples / vocoder.sample_rate, first_chunk,
                       tuple(stream.flow_runs), tuple(stream.hift_runs))


@dataclass(frozen=True)
class Closeness:
    """Streamed mel against offline mel (same units, same noise)."""

    worst: float  # largest relative L2 of one chunk
    overall: float  # relative L2 of the whole utterance
    first_chunk_units: int  # units received when the first chunk came
    first_chunk_frames: int  # mel frames in it (256 samples each)
    chunks: int


def relative_l2(streamed: torch.Tensor, offline: torch.Tensor) -> float:
    """|streamed - offline| / |offline|."""
    return float((streamed - offline).norm() / offline.norm())


def measure_closeness(vocoder: CosyVoiceVocoder, units: Sequence[int],
                      config: StreamingConfig, seed: int = 0) -> Closeness:
    """Push units one at a time; compare every committed mel chunk with offline mel."""
    ids = vocoder.units_to_tensor(units)
    noise = vocoder.request_noise(seed)
    offline = vocoder.units_to_mel(ids, 0, vocoder.mel_frames_for(len(units)),
                                   vocoder.speaker_condition(), noise)
    stream = MelStreamer(vocoder, config, noise=vocoder.request_noise(seed))
    chunks: list[tuple[int, torch.Tensor]] = []
    for count, unit in enumerate(units, start=1):
        chunks += [(count, mel) for mel in stream.push([unit])]
    chunks += [(len(units), mel) for mel in stream.flush()]
    chunks = [(count, mel) for count, mel in chunks if mel.shape[-1]]
    errors, start = [], 0
    for _, mel in chunks:
        errors.append(relative_l2(mel, offline[:, :, start:start + mel.shape[-1]]))
        start += mel.shape[-1]
    streamed = torch.cat([mel for _, mel in chunks], dim=2)
    return Closeness(max(errors), relative_l2(streamed, offline), chunks[0][0],
                     chunks[0][1].shape[-1], len(chunks))


def flow_flops(units: int, frames: int, n_timesteps: int = 10) -> float:
    """Floating-point operations of one real-size flow run (encoder, CFG-batched estimator)."""
    encoder, estimator = _flow_flop_model()
    return float(np.polyval(encoder, units) + n_timesteps * np.polyval(estimator, frames))


@functools.lru_cache(maxsize=1)
def _flow_flop_model() -> tuple[np.ndarray, np.ndarray]:
    """Quadratics in length (linear layers + attention) fitted to counts at three lengths."""
    with torch.device("meta"):
        flow = Flow(FlowConfig())
    sizes = (64, 128, 256)
    encoder, estimator = [], []
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        for size in sizes:
            before = counter.get_total_flops()
            flow.encoder(flow.input_embedding(torch.zeros(1, size, dtype=torch.long,
                                                          device="meta")))
            middle = counter.get_total_flops()
            flow.decoder.estimator(
                torch.zeros(2, 4 * flow.cfg.output_size, size, device="meta"),
                torch.zeros(2, flow.decoder.estimator.cfg.time_embed_dim, device="meta"))
            encoder.append(middle - before)
            estimator.append(counter.get_total_flops() - middle)
    return np.polyfit(sizes, encoder, 2), np.polyfit(sizes, estimator, 2)


@functools.lru_cache(maxsize=1)
def hift_flops_per_frame() -> float:
    """Floating-point operations of the real-size HiFT per mel frame (it is convolutional)."""
    hift, frames = HiFTGenerator(HiftConfig()), 32
    hift.fold_weight_norm()
    noise = torch.zeros(1, hift.cfg.nb_harmonics + 1, frames * hift.cfg.samples_per_frame)
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        hift.synthesize(torch.zeros(1, 80, frames), hift.initial_phase(torch.Generator()),
                        noise)
    return counter.get_total_flops() / frames


def cost_ratio(flow_runs: Sequence[FlowRun], hift_runs: Sequence[int], n_units: int,
               mel_frames: int) -> float:
    """Real-size FLOPs of the given runs over those of offline synthesis of n_units."""
    per_frame = hift_flops_per_frame()
    streamed = (sum(flow_flops(run.units, run.frames) for run in flow_runs)
                + per_frame * sum(hift_runs))
    return streamed / (flow_flops(n_units, mel_frames) + per_frame * mel_frames)


def compare_settings(vocoder: CosyVoiceVocoder, closeness_units: int, cost_units: int,
                     settings: dict[str, StreamingConfig]) -> list[str]:
    """One line per setting: closeness, first chunk, FLOP and time cost ratios."""
    vocab = vocoder.flow.cfg.vocab_size
    units = np.random.default_rng(0).integers(0, vocab, closeness_units).tolist()
    long_units = np.random.default_rng(1).integers(0, vocab, cost_units).tolist()
    offline_s = time_offline(vocoder, long_units).seconds
    lines = [f"closeness on {closeness_units} units, cost on {cost_units} units "
             f"(offline {offline_s:.2f} s here):"]
    for name, config in settings.items():
        close = measure_closeness(vocoder, units, config)
        streamed = time_streaming(vocoder, long_units, config)
        flops = cost_ratio(streamed.flow_runs, streamed.hift_runs, len(long_units),
                           vocoder.mel_frames_for(len(long_units)))
        seconds = streamed.seconds
        lines.append(f"  {name:>10}: mel rel. L2 worst chunk {close.worst:.3f}, overall "
                     f"{close.overall:.3f}; first chunk after {close.first_chunk_units} units "
                     f"({close.first_chunk_frames} frames); compute / offline {flops:.2f} "
                     f"(real-size FLOPs), {seconds / offline_s:.2f} (time here)")
    return lines


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--units", type=int, default=250, help="units (25 per second)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--closeness-units", type=int, default=400,
                        help="units of the closeness comparison (0: skip it)")
    parser.add_argument("--cost-units", type=int, default=1500,
                        help="units of the cost comparison (1500 = a 60 s answer)")
    args = parser.parse_args()
    options = VocoderOptions(device=args.device, dtype=args.dtype)
    with torch.inference_mode():
        vocoder = build_vocoder(args.size, options)
    vocab = vocoder.flow.cfg.vocab_size
    units = np.random.default_rng(0).integers(0, vocab, args.units).tolist()
    config = StreamingConfig()
    time_offline(vocoder, units[:50])  # warm-up (kernels, allocator)
    time_streaming(vocoder, units[:50], config)
    for name, run in (("offline", lambda: time_offline(vocoder, units)),
                      ("streaming", lambda: time_streaming(vocoder, units, config))):
        results = [run() for _ in range(args.repeats)]
        best = min(results, key=lambda result: result.seconds)
        first = ("" if best.first_chunk_seconds is None else
                 f", first chunk {best.first_chunk_seconds * 1000:.0f} ms after unit "
                 f"{config.first_chunk_units}")
        print(f"{args.size} {args.device} {args.dtype} {name}: {args.units} units -> "
              f"{best.audio_seconds:.2f} s audio in {best.seconds:.3f} s, "
              f"RTF {best.real_time_factor:.3f}{first}")
    if args.closeness_units > 0:
        print("\n".join(compare_settings(vocoder, args.closeness_units, args.cost_units,
                                         FRONTIER)))


if __name__ == "__main__":
    main()
