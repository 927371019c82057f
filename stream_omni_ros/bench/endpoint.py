"""Endpoint -> final transcript with a speech tokenizer of the real size, whole vs windowed.

`python -m stream_omni_ros.bench.endpoint [--seconds 2 5 15] [--repeats 1]`

The speech tokenizer is a random ONNX model with the real one's size and structure (built once
and cached, see tiny_assets); the Stream-Omni model is the tiny checkpoint, so the figures are
the speech front end's share of the latency. Each utterance is spoken into the engine at real
time with push-to-talk (partial transcripts every conversation.partial_interval_s, the endpoint
is the release), once re-tokenizing the whole utterance at every partial and at the endpoint
(hop_s = 0, the earlier behaviour) and once with the windowed tokenization. It also prints how
many final units of the windowed path agree with whole-utterance tokenization; with random
weights that share says nothing about a trained tokenizer, whose units depend on nearby audio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.engine_run import run_engine_turns
from stream_omni_ros.engine.model_responder import StreamOmniResponder
from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import GenerationConfig
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE, SpeechTokenizer
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.unit_stream import UnitStream, UnitWindowConfig, agreement
from stream_omni_ros.tiny_assets import ensure_full_speech_tokenizer

SETTINGS = {"whole": UnitWindowConfig(hop_s=0), "windowed": UnitWindowConfig()}


def babble(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like audio: a gliding voiced tone in syllable bursts plus noise, 16 kHz."""
    t = np.arange(int(seconds * MODEL_SAMPLE_RATE)) / MODEL_SAMPLE_RATE
    pitch = 120 + 60 * np.sin(2 * np.pi * 0.5 * t)
    voiced = np.sin(2 * np.pi * np.cumsum(pitch) / MODEL_SAMPLE_RATE)
    voiced += 0.5 * np.sin(4 * np.pi * np.cumsum(pitch) / MODEL_SAMPLE_RATE)
    bursts = np.sin(2 * np.pi * 4 * t) > -0.3
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.25 * voiced * bursts + 0.02 * noise).astype(np.float32)


def endpoint_tokenization(tokenizer: SpeechTokenizer, config: UnitWindowConfig,
                          wave: np.ndarray, repeats: int = 3) -> tuple[np.ndarray, float]:
    """Final units and the fastest time the endpoint's tokenization took (tokenizer alone).

    The last partial transcript ran 0.5 s before the endpoint; the units are a function of the
    audio alone, so that one partial leaves the same kept windows as a partial every 0.5 s.
    """
    times = []
    for _ in range(repeats):
        stream = UnitStream(tokenizer, config)
        stream.units(wave[:wave.size - MODEL_SAMPLE_RATE // 2])
        start = time.perf_counter()
        units = stream.units(wave)
        times.append(time.perf_counter() - start)
    return units, min(times)


def endpoint_latencies(generator: StreamOmniGenerator, tokenizer: SpeechTokenizer,
                       seconds: list[float], repeats: int) -> dict[str, dict[float, list]]:
    """Endpoint -> final transcript (s) per setting and utterance length."""
    image = np.zeros((64, 64, 3), np.uint8)
    results: dict[str, dict[float, list]] = {}
    for name, windows in SETTINGS.items():
        responder = StreamOmniResponder(generator, tokenizer, None,
                                        GenerationConfig(max_new_tokens=2), unit_windows=windows)
        results[name] = {s: [] for s in seconds}
        for seed in range(repeats):  # a fresh engine (and history) per repeat
            questions = [(f"{s:g} s", babble(s, seed)) for s in seconds]
            records = run_engine_turns(responder, BenchConfig(pace=1.0), questions, image,
                                       path=name, push_to_talk=True)
            for s, record in zip(seconds, records):
                results[name][s].append(record.endpoint_to_transcript_s)
        print(f"[endpoint] {name}: {results[name]}", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    """Print endpoint -> final transcript per utterance length for both settings."""
    parser = argparse.ArgumentParser(prog="python -m stream_omni_ros.bench.endpoint",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[2.0, 5.0, 15.0])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    tokenizer = SpeechTokenizer(ensure_full_speech_tokenizer())
    with tempfile.TemporaryDirectory(prefix="stream_omni_endpoint_") as folder:
        checkpoint = write_tiny_checkpoint(Path(folder) / "stream_omni", variant="units4096")
        loaded = load_stream_omni(str(checkpoint), LoadOptions(device="cpu", dtype="fp32",
                                                               local_files_only=True))
    generator = StreamOmniGenerator(loaded)
    latencies = endpoint_latencies(generator, tokenizer, args.seconds, args.repeats)
    print("| utterance | endpoint -> final transcript, whole / windowed (engine, each run) | "
          "tokenizer at the endpoint, whole / windowed (fastest of 3) | windowed units equal "
          "to whole |\n| --- | --- | --- | --- |")
    for seconds in args.seconds:
        wave = babble(seconds)
        (whole, whole_s), (windowed, windowed_s) = (
            endpoint_tokenization(tokenizer, config, wave) for config in SETTINGS.values())
        cells = [", ".join(f"{v * 1000:.0f}" for v in latencies[name][seconds])
                 for name in SETTINGS]
        print(f"| {seconds:g} s | {cells[0]} ms / {cells[1]} ms | {whole_s * 1000:.0f} ms / "
              f"{windowed_s * 1000:.0f} ms | {agreement(windowed, whole):.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
