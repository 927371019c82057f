"""Baseline (a): the reference-style pipeline of the original demo, on the same model.

Transcribe after the whole utterance, generate all text and units, vocode once at the end:
nothing reaches the user before the vocoder has finished.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from stream_omni_ros.bench.parts import BenchParts
from stream_omni_ros.bench.records import TurnRecord
from stream_omni_ros.model.events import AsrTranscript, GenerationEnd, SpeechUnits
from stream_omni_ros.model.request import GenerationConfig, GenerationRequest


def sync(parts: BenchParts) -> None:
    """Wait for queued GPU work so wall-clock times mean something."""
    if parts.loaded.model.device.type == "cuda":
        torch.cuda.synchronize()


def run_reference_turn(parts: BenchParts, generation: GenerationConfig, speech: np.ndarray,
                       image: np.ndarray, turn: int) -> TurnRecord:
    """One turn, the endpoint being the moment the utterance is complete."""
    sync(parts)
    start = time.perf_counter()
    units = parts.speech_tokenizer.waveform_to_units(speech)
    request = GenerationRequest("speech_to_speech", units=[int(u) for u in units],
                                images=(image,), config=generation)
    speech_units: list[int] = []
    transcript_at, text_tokens = start, 0
    for event in parts.generator.generate(request):
        if isinstance(event, AsrTranscript):
            transcript_at = time.perf_counter()
        elif isinstance(event, SpeechUnits):
            speech_units.extend(event.units)
        elif isinstance(event, GenerationEnd):
            text_tokens = event.n_text_tokens
    generated = time.perf_counter() - start
    wav = parts.vocoder.synthesize(speech_units)
    sync(parts)
    total = time.perf_counter() - start
    audio_s = len(wav) / parts.vocoder.sample_rate
    decode_s = generated - (transcript_at - start)  # the interleaved text + unit loop
    # Everything is delivered at the end: transcript and text when generation ends, audio after.
    timeline = {"transcript": (generated, generated), "response text": (generated, generated),
                "audio": (total, total)}
    return TurnRecord("reference", turn, generated, generated, total, total, text_tokens,
                      text_tokens / decode_s if decode_s else None, audio_s,
                      total / audio_s if audio_s else None, timeline)
