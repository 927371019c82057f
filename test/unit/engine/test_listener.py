"""The listener (mic side of the engine) in isolation: partial cadence, utterance audio, stamps."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.listener import (Listener, UtteranceBegan, UtteranceEnded,
                                             UtterancePartial)
from stream_omni_ros.engine.vad import Endpointer


def feed_all(listener: Listener, samples: np.ndarray, stamp: float = 10.0) -> list:
    """Feed stamped 40 ms S16LE chunks; return every command."""
    pcm = (np.clip(samples, -1, 32767 / 32768) * 32768).astype("<i2")
    commands = []
    for i in range(0, len(pcm), 640):
        chunk = PcmChunk(pcm[i:i + 640].tobytes(), 16000, stamp=stamp + i / 16000)
        commands += listener.feed(chunk, responding=False)[0]
    return commands


def test_partials_every_half_second_then_the_whole_utterance(speak, silero):
    config = EngineConfig()
    listener = Listener(config, Endpointer(config.vad, silero), itertools.count(7).__next__,
                        clock=lambda: 0.0)
    speech = speak("Robot, please describe everything that you can see on the kitchen table.")
    audio = np.concatenate([np.zeros(8000, np.float32), speech, np.zeros(16000, np.float32)])
    commands = feed_all(listener, audio)
    began, *partials, ended = commands
    assert isinstance(began, UtteranceBegan) and isinstance(ended, UtteranceEnded)
    assert {c.turn_id for c in commands} == {7}
    lengths = [len(p.audio) for p in partials if isinstance(p, UtterancePartial)]
    assert len(lengths) == len(partials) >= len(speech) // 8000 - 1
    assert all(8000 <= b - a <= 8000 + 512 for a, b in zip(lengths, lengths[1:]))
    # partials and the final audio are the same stream (the final one trimmed to the end)
    n = min(len(ended.audio), lengths[-1])
    np.testing.assert_array_equal(ended.audio[:n], partials[-1].audio[:n])
    assert ended.start_stamp == began.start_stamp
    assert ended.end_stamp - ended.start_stamp == pytest.approx(len(ended.audio) / 16000)
    assert abs(ended.start_stamp - 10.5) < 0.15 and not ended.truncated
