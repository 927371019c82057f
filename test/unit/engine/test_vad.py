"""Endpointing of real synthesised speech with the real silero-vad model."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.engine.config import VadConfig
from stream_omni_ros.engine.vad import Endpointer, SpeechAudio, SpeechEnded, SpeechStarted



def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(int(seconds * 16000), np.float32)


def run_endpointer(endpointer: Endpointer, audio: np.ndarray, chunk: int = 1600) -> list:
    """Push audio in microphone-sized chunks and collect every event."""
    events = []
    for i in range(0, len(audio), chunk):
        events += endpointer.push(audio[i:i + chunk], i)
    return events


def boundaries(events: list) -> list:
    """(start, end, reason) of each utterance from the event list."""
    starts = [e.start_sample for e in events if isinstance(e, SpeechStarted)]
    ends = [(e.end_sample, e.reason) for e in events if isinstance(e, SpeechEnded)]
    return [(s, e, r) for s, (e, r) in zip(starts, ends)]


def test_each_utterance_found_with_sample_accurate_bounds(speak, silero):
    phrases = ["Hello robot, what do you see on the table?", "Please pick up the red cup.",
               "Thank you."]
    parts, spans, cursor = [silence(0.8)], [], 12800
    for i, text in enumerate(phrases):
        speech = speak(text, name=f"p{i}")
        spans.append((cursor, cursor + len(speech)))
        parts += [speech, silence(1.2)]
        cursor += len(speech) + 19200
    audio = np.concatenate(parts)
    found = boundaries(run_endpointer(Endpointer(VadConfig(), silero), audio))
    assert len(found) == len(phrases), found
    for (start, end, reason), (true_start, true_end) in zip(found, spans):
        assert reason == "silence"
        # within padding (100 ms) + one frame of the synthesised speech bounds
        assert true_start - 2200 <= start <= true_start + 4000
        assert true_end - 4000 <= end <= true_end + 2200


def test_short_click_and_silence_are_not_speech(silero):
    rng = np.random.default_rng(0)
    audio = np.concatenate([silence(1.0), rng.normal(0, 0.5, 800).astype(np.float32),
                            silence(1.0), rng.normal(0, 0.003, 16000).astype(np.float32)])
    events = run_endpointer(Endpointer(VadConfig(), silero), audio)
    assert not [e for e in events if isinstance(e, SpeechStarted)]


def test_audio_events_cover_the_utterance_contiguously(speak, silero):
    audio = np.concatenate([silence(0.5), speak("Where is the kitchen?"), silence(1)])
    events = run_endpointer(Endpointer(VadConfig(), silero), audio, chunk=700)
    (start, end, _), = boundaries(events)
    pieces = [e for e in events if isinstance(e, SpeechAudio)]
    assert pieces[0].first_sample == start
    joined = np.concatenate([p.samples for p in pieces])
    for a, b in zip(pieces, pieces[1:]):
        assert b.first_sample == a.first_sample + len(a.samples)
    assert len(joined) >= end - start
    np.testing.assert_array_equal(joined[:end - start], audio[start:end])


def test_monologue_is_cut_at_max_utterance_then_waits_for_a_pause(speak, silero):
    sentence = speak("I keep talking about robots and cups and tables without a break")
    monologue = np.concatenate([silence(0.3)] + [sentence] * 6 + [silence(1.0)])
    tail = speak("Now a new question.", name="tail")
    audio = np.concatenate([monologue, tail, silence(1.0)])
    config = VadConfig(max_utterance_s=4.0, min_silence_ms=700)
    found = boundaries(run_endpointer(Endpointer(config, silero), audio))
    assert found[0][2] == "max_length"
    assert found[0][1] - found[0][0] == 4 * 16000
    # the rest of the monologue is ignored; the next utterance after the pause is found
    assert len(found) == 2 and found[1][0] >= len(monologue) - 16000
    assert found[1][2] == "silence"


@pytest.mark.parametrize("bad", [dict(threshold=1.5), dict(min_silence_ms=0),
                                 dict(max_utterance_s=0.1)])
def test_bad_vad_config_is_rejected_naming_the_field(bad):
    from stream_omni_ros.errors import ConfigError
    with pytest.raises(ConfigError, match=f"vad.{next(iter(bad))}"):
        VadConfig(**bad)


def test_a_shorter_minimum_speech_starts_the_same_utterance_earlier(speak, silero):
    audio = np.concatenate([silence(0.5), speak("Where is the kitchen?"), silence(1)])
    detected = {}
    for ms in (None, 32, 1000):  # 1000: never longer than vad.min_speech_ms
        endpointer = Endpointer(VadConfig(), silero)
        endpointer.use_min_speech(ms)
        for first in range(0, len(audio), 512):
            started = [e for e in endpointer.push(audio[first:first + 512], first)
                       if isinstance(e, SpeechStarted)]
            if started:
                detected[ms] = (started[0].start_sample, first)
                break
    assert detected[1000] == detected[None]
    assert detected[32][0] == detected[None][0]  # the same pre-roll: no audio lost
    assert detected[None][1] - detected[32][1] >= (250 - 32) * 16 - 512
