"""The listener (mic side of the engine) in isolation: partial cadence, utterance audio, stamps."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import EngineConfig, ListenConfig, VadConfig
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


def push_to_talk_listener(silero) -> Listener:
    """A push-to-talk listener; press and release stamps are given by each test."""
    config = EngineConfig(listen=ListenConfig(mode="push_to_talk"))
    return Listener(config, Endpointer(config.vad, silero), itertools.count(1).__next__,
                    clock=lambda: 0.0)


def ramp(seconds: float, first: int = 0) -> np.ndarray:
    """Distinct S16-exact samples, so that which samples were kept can be checked exactly."""
    n = int(seconds * 16000)
    return (((np.arange(first, first + n) % 20000) - 10000) / 32768).astype(np.float32)


def feed_span(listener: Listener, samples: np.ndarray, stamp: float) -> tuple[list, list]:
    """Feed stamped 40 ms chunks; return every command and every warning."""
    pcm = (samples * 32768).astype("<i2")
    commands, warnings = [], []
    for i in range(0, len(pcm), 640):
        chunk = PcmChunk(pcm[i:i + 640].tobytes(), 16000, stamp=stamp + i / 16000)
        more, warned = listener.feed(chunk, responding=False)
        commands += more
        warnings += warned
    return commands, warnings


def test_push_to_talk_waits_for_audio_stamped_before_the_release(silero):
    listener = push_to_talk_listener(silero)
    audio = ramp(1.5)
    feed_span(listener, audio[:8000], 9.5)  # a live microphone, before the press
    [began] = listener.open_turn(False, 10.0)
    assert began.start_stamp == 10.0
    commands, warnings = feed_span(listener, audio[8000:16000], 10.0)
    assert [type(c) for c in commands] == [UtterancePartial] and not warnings
    assert listener.close_turn(11.0) == []  # the last half second is still on its way
    assert listener.waiting_turn == began.turn_id
    commands, warnings = feed_span(listener, audio[16000:], 10.5)
    [ended] = commands
    assert not warnings and listener.waiting_turn is None
    assert (ended.start_stamp, ended.end_stamp) == (10.0, 11.0) and not ended.truncated
    np.testing.assert_array_equal(ended.audio, audio[8000:24000])


def test_press_and_release_cut_a_lagging_stream_by_its_stamps(silero):
    listener = push_to_talk_listener(silero)
    audio = ramp(3.0)  # stamped 9.0 .. 12.0, always 0.2 s behind the presses
    feed_span(listener, audio[:12800], 9.0)  # up to 9.8
    listener.open_turn(False, 10.0)
    feed_span(listener, audio[12800:28800], 9.8)  # up to 10.8
    assert listener.close_turn(11.0) == []
    [ended], _ = feed_span(listener, audio[28800:], 10.8)
    assert (ended.start_stamp, ended.end_stamp) == (10.0, 11.0)
    np.testing.assert_array_equal(ended.audio, audio[16000:32000])


def test_an_expired_wait_answers_what_arrived_and_counts_what_comes_later(silero):
    listener = push_to_talk_listener(silero)
    audio = ramp(1.0)
    [began] = listener.open_turn(False, 10.0)
    feed_span(listener, audio[:8000], 10.0)
    listener.close_turn(11.0)
    [ended], [expired] = listener.expire_release(began.turn_id)
    np.testing.assert_array_equal(ended.audio, audio[:8000])
    assert (ended.start_stamp, ended.end_stamp) == (10.0, 10.5)
    assert expired.kind == "late_audio_wait_expired" and "500 ms" in expired.message
    assert listener.expire_release(began.turn_id) == ([], [])  # once
    commands, late = feed_span(listener, np.concatenate([audio[8000:], ramp(0.2)]), 10.5)
    assert commands == [] and {w.kind for w in late} == {"late_audio"}
    assert {w.turn_id for w in late} == {began.turn_id}
    assert sum(int(w.message.split(" ms")[0]) for w in late) == 500  # the rest: not late


def test_stamps_on_another_clock_delimit_by_arrival_and_say_so(silero):
    listener = push_to_talk_listener(silero)
    audio = ramp(1.0)
    feed_span(listener, audio[:4000], 5000.0)  # a bag replayed without simulation time
    listener.open_turn(False, 10.0)
    _, warnings = feed_span(listener, audio[4000:12000], 5000.25)
    [ended] = listener.close_turn(11.0)  # nothing to wait for: arrival order
    np.testing.assert_array_equal(ended.audio, audio[4000:12000])
    assert [w.kind for w in warnings] == ["clock_mismatch"]
    assert "listen.late_audio_wait_s" in warnings[0].message


def test_max_utterance_cut_keeps_every_sample_before_it_even_when_late(silero):
    config = EngineConfig(listen=ListenConfig(mode="push_to_talk"),
                          vad=VadConfig(max_utterance_s=1.0, min_speech_ms=100))
    listener = Listener(config, Endpointer(config.vad, silero), itertools.count(1).__next__,
                        clock=lambda: 0.0)
    audio = ramp(2.0)
    listener.open_turn(False, 10.0)
    feed_span(listener, audio[:320], 10.0)
    assert listener.close_turn(12.0) == []  # held for 2 s, nearly all of it still to come
    commands, _ = feed_span(listener, audio[320:], 10.02)
    [ended] = [c for c in commands if isinstance(c, UtteranceEnded)]
    assert ended.truncated and (ended.start_stamp, ended.end_stamp) == (10.0, 11.0)
    np.testing.assert_array_equal(ended.audio, audio[:16000])
