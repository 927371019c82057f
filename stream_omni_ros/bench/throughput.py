"""Step-level figures and the model-only baselines, reusing the model and vocoder benchmarks.

Baseline (b), the memory-bandwidth bound, and (c), transformers-eager decoding of the same
weights, come from stream_omni_ros.bench.model_bench; vocoder real-time factors from
stream_omni_ros.bench.vocoder_bench.
"""
from __future__ import annotations

import numpy as np

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.parts import BenchParts
from stream_omni_ros.bench import model_bench
from stream_omni_ros.bench import vocoder_bench
from stream_omni_ros.vocoder.streaming import StreamingConfig

DECODE_TOKENS = 128  # long enough that the short prompt's prefill is a small part


def model_steps(parts: BenchParts, config: BenchConfig) -> dict[str, float]:
    """Prefill, text-step and unit-step seconds of our model code, plus baselines (b) and (c)."""
    loaded = parts.loaded
    steps = model_bench.step_timings(loaded.model, config.step_prompt_len, config.step_repeats)
    steps["text_tokens_per_sec"] = 1.0 / steps["text_step_s"]
    hf = model_bench.hf_eager_step_seconds(loaded, config.step_prompt_len, config.step_repeats)
    steps["hf_eager_text_step_s"] = hf["text_step_s"]
    steps["hf_eager_prefill_s"] = hf["prefill_s"]
    rate = generator_decode_rate(parts)
    steps["generator_decode_tokens_per_sec"] = rate
    steps["decode_speedup_over_hf_eager"] = rate * hf["text_step_s"]
    if loaded.model.device.type == "cuda":
        bound = model_bench.bandwidth_bound(loaded, steps)
        steps["copy_bandwidth_GB_per_sec"] = bound["copy_bandwidth_GB_per_sec"]
        steps["bound_tokens_per_sec"] = bound["bound_tokens_per_sec"]
        steps["decode_fraction_of_bound"] = rate / bound["bound_tokens_per_sec"]
    return steps


def generator_decode_rate(parts: BenchParts) -> float:
    """Text tokens/s of a text_to_text turn through the generator (compiled steps if set)."""
    for _ in range(2):  # the first turn pays for compilation and allocation
        marks = model_bench.turn_timings(parts.generator, "text_to_text", 1, DECODE_TOKENS, 1)
    return marks["text_tokens"] / marks["total_s"]


def vocoder_rtf(parts: BenchParts, config: BenchConfig) -> dict[str, float]:
    """Real-time factor of offline and streaming synthesis of one fixed-length answer."""
    vocoder = parts.vocoder
    rng = np.random.default_rng(config.seed)
    units = rng.integers(0, vocoder.flow.cfg.vocab_size, config.units).tolist()
    streaming = StreamingConfig()
    # Warm-up at the timed lengths: first calls pay for kernel selection and allocation.
    vocoder_bench.time_offline(vocoder, units)
    vocoder_bench.time_streaming(vocoder, units, streaming)
    offline = vocoder_bench.time_offline(vocoder, units)
    streamed = vocoder_bench.time_streaming(vocoder, units, streaming)
    return {"offline_rtf": offline.real_time_factor,
            "streaming_rtf": streamed.real_time_factor,
            "streaming_first_chunk_s": streamed.first_chunk_seconds or 0.0,
            "audio_s": offline.audio_seconds}
