"""Cost per camera image and per microphone message: conversion, engine feed, image encoding."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np
import torch

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.engine_run import CHUNK_SAMPLES
from stream_omni_ros.bench.parts import BenchParts
from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.vad import SileroVad
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE


def median_call_s(fn: Callable[[int], object], repeats: int) -> float:
    """Median wall time of fn(i) over repeats calls, after one warm-up call."""
    fn(-1)
    times = []
    for index in range(repeats):
        start = time.perf_counter()
        fn(index)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def engine_feed_costs(image: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds per engine.feed_image and per 40 ms engine.feed_audio (VAD included)."""
    noise = np.random.default_rng(0).normal(0, 0.01, CHUNK_SAMPLES)
    chunk = (noise * 32768).astype("<i2").tobytes()
    engine = ConversationEngine(EchoResponder(), EngineConfig(), speech_probability=SileroVad())
    try:
        feed_audio = median_call_s(lambda i: engine.feed_audio(PcmChunk(
            chunk, MODEL_SAMPLE_RATE, stamp=10.0 + (i + 1) * CHUNK_SAMPLES / MODEL_SAMPLE_RATE,
            seq=i + 1)), repeats)
        feed_image = median_call_s(lambda i: engine.feed_image(image, stamp=10.0 + i), repeats)
    finally:
        engine.stop()
    return {"engine_feed_audio_s": feed_audio, "engine_feed_image_s": feed_image}


def ros_conversion_costs(image: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds per message <-> array conversion in the nodes; empty without ROS."""
    try:
        from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
        from stream_omni_ros.nodes.conversions import image_msg_to_rgb, rgb_to_image_msg
    except ImportError:  # no ROS on this machine: the engine-side costs still count
        return {}
    image_msg = rgb_to_image_msg(image)
    audio = np.zeros(CHUNK_SAMPLES, np.float32)
    audio_msg = pcm_to_audio_msg(audio, MODEL_SAMPLE_RATE)
    reply = np.zeros(2205, np.float32)  # a 100 ms speech chunk at 22050 Hz
    return {
        "image_msg_to_rgb_s": median_call_s(lambda i: image_msg_to_rgb(image_msg), repeats),
        "audio_msg_to_pcm_s": median_call_s(lambda i: audio_msg_to_pcm(audio_msg), repeats),
        "pcm_to_audio_msg_100ms_s": median_call_s(
            lambda i: pcm_to_audio_msg(reply, 22050, encoding="F32LE"), repeats)}


def image_encode_s(parts: BenchParts, image: np.ndarray, repeats: int) -> float:
    """Seconds for the model to turn one camera frame into LLM input tokens."""
    model = parts.loaded.model

    def encode(_: int) -> None:
        with torch.inference_mode():
            model.encode_image(image)
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    return median_call_s(encode, max(2, repeats // 10))


def message_costs(parts: BenchParts, config: BenchConfig, image: np.ndarray) -> dict[str, float]:
    """Per-message costs, and the totals per image and per audio message on the node."""
    costs = {**engine_feed_costs(image, config.message_repeats),
             **ros_conversion_costs(image, config.message_repeats),
             "model_encode_image_s": image_encode_s(parts, image, config.message_repeats)}
    costs["per_image_s"] = (costs.get("image_msg_to_rgb_s", 0.0) + costs["engine_feed_image_s"]
                            + costs["model_encode_image_s"])
    costs["per_audio_message_s"] = (costs.get("audio_msg_to_pcm_s", 0.0)
                                    + costs["engine_feed_audio_s"])
    return costs
