"""Per-turn options, explicit images and complete audio utterances (EchoResponder, real VAD)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from stream_omni_ros.engine.config import ConversationConfig, ListenConfig
from stream_omni_ros.engine.echo_responder import describe_audio
from stream_omni_ros.engine.events import (SOURCE_PUSH_TO_TALK, ResponseDelta, SpeechChunk,
                                           TranscriptFinal, TurnFinished, TurnStarted)
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.errors import InputError


def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(int(seconds * 16000), np.float32)


def test_speak_option_overrides_the_configured_default_both_ways(engine_factory, collect):
    engine = engine_factory()  # conversation.speak defaults to True
    engine.request_turn("quiet please", TurnOptions(speak=False))
    quiet = collect(engine)
    assert isinstance(quiet[-1], TurnFinished) and quiet[-1].response
    assert not [e for e in quiet if isinstance(e, SpeechChunk)]
    mute = engine_factory(conversation=ConversationConfig(speak=False))
    mute.request_turn("say it anyway", TurnOptions(speak=True))
    loud = collect(mute)
    assert [e for e in loud if isinstance(e, SpeechChunk)][-1].is_final


def test_max_new_tokens_limits_the_response(engine_factory, collect):
    engine = engine_factory()
    engine.request_turn("one two three four five six", TurnOptions(max_new_tokens=3))
    done = collect(engine)[-1]
    assert done.response == "You said: one" and done.reason == "max_new_tokens"
    assert done.metrics.text_tokens == 3
    engine.request_turn("one two three four five six")  # the option held for one turn only
    assert collect(engine)[-1].response.startswith("You said: one two three four five six")


def test_use_camera_false_ignores_a_fresh_camera_frame(engine_factory, collect):
    engine = engine_factory()
    engine.feed_image(np.zeros((8, 12, 3), np.uint8), stamp=time.time())
    engine.request_turn("what do you see", TurnOptions(use_camera=False))
    blind = collect(engine)[-1]
    assert blind.image_stamp is None and "showed" not in blind.response
    assert "options" in blind.image_note
    engine.request_turn("and now")  # the same frame is used when the option is not given
    assert collect(engine)[-1].response.endswith("showed 12x8. (turn 2)")


def test_explicit_image_is_used_instead_of_the_camera(engine_factory, collect):
    engine = engine_factory()
    engine.feed_image(np.zeros((8, 12, 3), np.uint8), stamp=time.time())
    engine.request_turn("look", TurnOptions(use_camera=False),
                        image=np.zeros((5, 7), np.uint8), image_stamp=42.0)
    done = collect(engine)[-1]
    assert done.response.endswith("showed 7x5.") and done.image_stamp == 42.0
    with pytest.raises(InputError, match="shape"):
        engine.request_turn("bad", image=np.zeros((5, 7, 2), np.uint8))


def test_audio_turn_skips_the_microphone_and_carries_options_and_image(engine_factory,
                                                                       collect):
    engine = engine_factory()
    audio = np.random.default_rng(0).normal(0, 0.05, 24000).astype(np.float32)
    turn = engine.submit_audio_turn(audio, TurnOptions(speak=False),
                                    image=np.zeros((4, 6, 3), np.uint8), image_stamp=7.0)
    events = collect(engine)
    assert isinstance(events[0], TurnStarted) and events[0].source == SOURCE_PUSH_TO_TALK
    assert {e.turn_id for e in events} == {turn}
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert final.text == describe_audio(audio) == "(1.5 s of speech)"  # no VAD trimming
    assert final.end_stamp - final.start_stamp == pytest.approx(1.5)
    assert not [e for e in events if isinstance(e, SpeechChunk)]
    assert events[-1].response.endswith("showed 6x4.") and events[-1].image_stamp == 7.0


@pytest.mark.parametrize("bad, expected", [
    (np.zeros(0, np.float32), "shape"), (np.zeros((10, 2), np.float32), "shape"),
    (np.zeros(10, np.int16), "dtype"), (np.full(10, np.nan, np.float32), "NaN"),
    ([0.0] * 10, "type")])
def test_bad_audio_turn_is_refused_with_its_defect(engine_factory, bad, expected):
    engine = engine_factory()
    with pytest.raises(InputError, match=expected):
        engine.submit_audio_turn(bad)
    assert engine.state == "listening"  # nothing was queued


def test_bad_options_are_refused_naming_the_field():
    with pytest.raises(InputError, match="top_p=1.5"):
        TurnOptions(top_p=1.5)
    with pytest.raises(InputError, match="max_new_tokens=0"):
        TurnOptions(max_new_tokens=0)
    with pytest.raises(InputError, match="temperature=-1"):
        TurnOptions(temperature=-1.0)


def test_audio_turn_does_not_disturb_a_live_microphone_utterance(
        engine_factory, speak, mic, collect):
    engine = engine_factory()
    mic = mic(engine)
    speech = speak("Hello robot, please tell me where the red cup is on the table.")
    mic.play(silence(0.5))
    mic.play(speech[:16000])
    started = collect(engine, lambda e: isinstance(e, TurnStarted))[-1]
    submitted: list[int] = []
    side = threading.Thread(target=lambda: submitted.append(engine.submit_audio_turn(
        silence(0.8), TurnOptions(speak=False))))
    side.start()  # from another thread while the microphone keeps streaming
    mic.play(speech[16000:])
    side.join()
    mic.play(silence(1.0))
    events = collect(engine, lambda e: isinstance(e, TurnFinished)
                     and e.turn_id == started.turn_id, timeout=15)
    by_turn = {e.turn_id: e for e in events if isinstance(e, TranscriptFinal)}
    assert by_turn[submitted[0]].text == "(0.8 s of speech)"
    heard = by_turn[started.turn_id]
    assert heard.end_stamp - heard.start_stamp == pytest.approx(len(speech) / 16000, abs=0.35)
    finished = [e.turn_id for e in events if isinstance(e, TurnFinished)]
    assert finished == [submitted[0], started.turn_id]
    assert [e for e in events if isinstance(e, ResponseDelta) and e.turn_id == submitted[0]]


def test_listened_turns_take_the_options_of_their_request(engine_factory, mic, collect):
    engine = engine_factory(listen=ListenConfig(mode="push_to_talk"))
    mic = mic(engine)
    engine.open_turn(TurnOptions(speak=False), image=np.zeros((3, 5, 3), np.uint8))
    mic.play(silence(0.6))
    engine.close_turn()
    pushed = collect(engine)
    assert not [e for e in pushed if isinstance(e, SpeechChunk)]
    assert pushed[-1].response.endswith("showed 5x3.")
    engine.open_turn()  # the next turn is back to the configured behaviour
    mic.play(silence(0.6))
    engine.close_turn()
    assert [e for e in collect(engine) if isinstance(e, SpeechChunk)]
