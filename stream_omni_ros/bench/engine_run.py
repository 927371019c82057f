"""Spoken turns through the ConversationEngine (VAD, partial transcripts, streaming vocoder)."""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.parts import BenchParts
from stream_omni_ros.bench.records import TurnRecord, since
from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EchoConfig, EngineConfig, ImageConfig, ListenConfig
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (EngineError, ResponseDelta, SpeechChunk,
                                           TranscriptFinal, TranscriptPartial, TurnCancelled,
                                           TurnFinished)
from stream_omni_ros.engine.model_responder import StreamOmniResponder
from stream_omni_ros.engine.responder import Responder
from stream_omni_ros.engine.vad import SileroVad
from stream_omni_ros.errors import StreamOmniError
from stream_omni_ros.model.request import GenerationConfig
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

PLAYBACK_MARGIN_S = 0.3  # after the answer's last sample, before the next question
CHUNK_SAMPLES = 640  # 40 ms at 16 kHz, a typical microphone driver chunk
TURN_TIMEOUT_S = 300.0


def fixed_generation(config: BenchConfig) -> GenerationConfig:
    """Fixed lengths: stop ids ignored, units units and at most text_tokens text tokens."""
    return GenerationConfig(max_new_tokens=config.text_tokens, max_new_units=config.units,
                            ignore_stop_ids=True, mask_units=True, seed=config.seed)


class Microphone:
    """Feeds 16 kHz speech as stamped S16LE chunks, paced like a driver (pace 1 = real time)."""

    def __init__(self, feed, pace: float, start_stamp: float = 1000.0) -> None:
        self.feed, self.pace, self.stamp, self.seq = feed, pace, start_stamp, 0

    def play(self, samples: np.ndarray) -> list[float]:
        """Send all samples; return the monotonic time each chunk was sent."""
        pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2")
        start, sent = time.monotonic(), []
        for index, first in enumerate(range(0, len(pcm), CHUNK_SAMPLES)):
            if self.pace > 0:
                due = start + index * CHUNK_SAMPLES / MODEL_SAMPLE_RATE / self.pace
                time.sleep(max(0.0, due - time.monotonic()))
            piece = pcm[first:first + CHUNK_SAMPLES]
            self.feed(PcmChunk(piece.tobytes(), MODEL_SAMPLE_RATE, stamp=self.stamp, seq=self.seq))
            sent.append(time.monotonic())
            self.seq += 1
            self.stamp += len(piece) / MODEL_SAMPLE_RATE
        return sent

    def wait_out_answer(self, audio_s: float, margin_s: float = PLAYBACK_MARGIN_S) -> None:
        """Silence as long as the answer plays, as a user waits before the next question.

        Without it the next question interrupts the answer's playback (a barge-in turn). The
        length is whole chunks of the answer's duration, never the clock, so that every path
        gives the voice activity detector the same samples and finds the same endpoints.
        """
        chunks = math.ceil((audio_s + margin_s) * MODEL_SAMPLE_RATE / CHUNK_SAMPLES)
        self.play(np.zeros(chunks * CHUNK_SAMPLES, np.float32))


@dataclass
class Arrivals:
    """Events of the running turn with their monotonic arrival times (dispatcher thread)."""

    events: list
    done: threading.Event

    def on_event(self, event) -> None:
        """Engine callback: timestamp on arrival, flag the end of a turn."""
        self.events.append((time.monotonic(), event))
        if isinstance(event, (TurnFinished, TurnCancelled)):
            self.done.set()


def model_responder(parts: BenchParts, config: BenchConfig) -> StreamOmniResponder:
    """The engine's model-backed responder with fixed response lengths."""
    return StreamOmniResponder(parts.generator, parts.speech_tokenizer, parts.vocoder,
                               fixed_generation(config))


def run_engine_turns(responder: Responder, config: BenchConfig,
                     questions: list[tuple[str, np.ndarray]], image: np.ndarray,
                     path: str = "engine", pad_after_s: float = 1.0,
                     push_to_talk: bool = False) -> list[TurnRecord]:
    """One spoken turn per question, each with a fresh camera frame; one record per turn.

    With push_to_talk the question is held open for its whole audio and released right after
    it, so the endpoint is that release instead of a voice-activity decision.
    """
    arrivals = Arrivals([], threading.Event())
    listen = ListenConfig(mode="push_to_talk" if push_to_talk else "always")
    # No loudspeaker plays into this microphone, and a paced feed outruns the engine's
    # wall-clock playback estimate: the next question must count as speech, not as echo.
    echo = EchoConfig(without_reference="barge_in")
    engine_config = EngineConfig(image=ImageConfig(frame_at=config.frame_at), listen=listen,
                                 echo=echo)
    engine = ConversationEngine(responder, engine_config, speech_probability=SileroVad(),
                                callback=arrivals.on_event)
    mic, records = Microphone(engine.feed_audio, config.pace), []
    try:
        for turn, (_, speech) in enumerate(questions):
            arrivals.events.clear()
            arrivals.done.clear()
            speech_end = mic.stamp + len(speech) / MODEL_SAMPLE_RATE - pad_after_s
            # A camera streams: a frame as the question starts and one as it ends, so that
            # either image.frame_at finds one.
            engine.feed_image(image, stamp=mic.stamp)
            engine.feed_image(image, stamp=speech_end)
            if push_to_talk:  # pressed and released on the microphone's own clock
                engine.open_turn(stamp=mic.stamp)
            sent = mic.play(speech)
            if push_to_talk:
                engine.close_turn(stamp=mic.stamp)
            if not arrivals.done.wait(TURN_TIMEOUT_S):
                raise StreamOmniError(f"bench turn {turn}: no TurnFinished within "
                                      f"{TURN_TIMEOUT_S} s of the endpoint")
            records.append(engine_record(turn, list(arrivals.events), sent, path))
            mic.wait_out_answer(records[-1].audio_s or 0.0)
    finally:
        engine.stop()
    return records


def engine_record(turn: int, arrived: list, sent: list[float], path: str = "engine"
                  ) -> TurnRecord:
    """A TurnRecord from the timestamped events of one turn."""
    errors = [e for _, e in arrived if isinstance(e, EngineError)]
    finished = [(t, e) for t, e in arrived if isinstance(e, TurnFinished)]
    if errors or not finished:
        raise StreamOmniError(f"bench turn {turn} ({path}) did not finish: "
                              f"{[f'{e.kind}: {e.message}' for e in errors] or 'cancelled'}")
    end_at, done = finished[0]
    m = done.metrics
    transcript_at = next(t for t, e in arrived if isinstance(e, TranscriptFinal))
    endpoint = transcript_at - m.endpoint_to_transcript_s
    kinds = {"microphone": None, "transcript": (TranscriptPartial, TranscriptFinal),
             "response text": ResponseDelta, "audio": SpeechChunk}
    timeline = {"microphone": since(sent, endpoint)}
    for name, kind in kinds.items():
        if kind is not None:
            timeline[name] = since([t for t, e in arrived if isinstance(e, kind)], endpoint)
    return TurnRecord(path, turn, m.endpoint_to_transcript_s, m.endpoint_to_first_text_s,
                      m.endpoint_to_first_audio_s, end_at - endpoint, m.text_tokens,
                      m.tokens_per_s, m.audio_s, m.real_time_factor,
                      {k: v for k, v in timeline.items() if v is not None})
