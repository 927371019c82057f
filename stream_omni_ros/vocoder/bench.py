"""Benchmark the unit vocoder: real-time factor and first-chunk latency, offline vs streaming.

    python -m stream_omni_ros.vocoder.bench [--device cpu|cuda] [--size tiny|full] [--units N]

``full`` builds the real CosyVoice-300M-25Hz shapes with random weights (no download needed);
``tiny`` writes and loads the tiny test folder. Random weights cost the same time as real ones.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch

from .cosyvoice import CosyVoiceVocoder, VocoderOptions
from .flow import Flow, FlowConfig
from .hift import HiFTGenerator, HiftConfig
from .streaming import StreamingConfig, StreamingSynthesizer
from .tiny_cosyvoice import TINY_SPEAKER, write_tiny_cosyvoice


@dataclass(frozen=True)
class BenchResult:
    """Timings of one synthesis run."""

    seconds: float
    audio_seconds: float
    first_chunk_seconds: float | None

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
    return BenchResult(seconds, samples / vocoder.sample_rate, first_chunk)


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "full"])
    parser.add_argument("--units", type=int, default=250, help="units (25 per second)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--repeats", type=int, default=3)
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


if __name__ == "__main__":
    main()
