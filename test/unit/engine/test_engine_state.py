"""What the engine tells its users: frame ids of what a turn used, listening, callback failures."""
from __future__ import annotations

import numpy as np

from stream_omni_ros.engine.config import EngineConfig, ImageConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (TranscriptFinal, TranscriptPartial, TurnCancelled,
                                           TurnFinished)


def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(int(seconds * 16000), np.float32)


def test_turn_events_carry_the_frame_ids_of_the_audio_and_image_the_turn_used(
        engine_factory, mic, collect, speak):
    engine = engine_factory(EchoResponder(seconds_per_word=0.01),
                            image=ImageConfig(frame_at="speech_start"))
    speech = speak("Please look at the table and tell me what you see.")
    engine.feed_image(np.full((8, 12, 3), 1, np.uint8), stamp=1000.4, frame_id="camera_a")
    microphone = mic(engine, frame_id="mic_a")
    microphone.play(np.concatenate([silence(0.5), speech[:16000]]))
    # after the turn took its frame at speech start: newer in arrival and in stamp, unused
    engine.feed_image(np.full((6, 10, 3), 2, np.uint8), stamp=1001.4, frame_id="camera_b")
    microphone.play(np.concatenate([speech[16000:], silence(1.0)]))
    events = collect(engine)
    done = events[-1]
    assert isinstance(done, TurnFinished) and done.image_stamp == 1000.4
    assert done.image_frame_id == "camera_a" and done.response.endswith("showed 12x8.")
    transcripts = [e for e in events if isinstance(e, (TranscriptPartial, TranscriptFinal))]
    assert transcripts and {e.audio_frame_id for e in transcripts} == {"mic_a"}


def test_a_turn_without_an_image_or_audio_names_no_frame(engine_factory, collect):
    engine = engine_factory(EchoResponder(seconds_per_word=0.01))
    engine.feed_image(np.full((8, 12, 3), 1, np.uint8), stamp=1000.0, frame_id="camera_a")
    engine.request_turn("hello", image=np.full((4, 4, 3), 3, np.uint8))
    events = collect(engine)
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert final.audio_frame_id == "" and events[-1].image_frame_id == ""


def test_listening_off_ignores_the_microphone_and_is_engine_state(engine_factory, mic, collect,
                                                                   speak):
    engine = engine_factory(EchoResponder(seconds_per_word=0.01))
    assert engine.listening and engine.state == "listening"
    engine.set_listening(False)
    assert not engine.listening and engine.state == "idle"
    speech = np.concatenate([silence(0.3), speak("Hello robot."), silence(1.0)])
    microphone = mic(engine)
    microphone.play(speech)
    assert engine.feed_audio(microphone.chunk(silence(0.04))) is False
    engine.set_listening(True)
    assert engine.state == "listening"
    microphone.play(speech)
    events = collect(engine)
    # the speech played while not listening made no turn: the first one is turn 1
    assert isinstance(events[-1], TurnFinished) and {e.turn_id for e in events} == {1}


def test_listening_off_drops_the_utterance_being_heard(engine_factory, mic, collect, speak):
    engine = engine_factory()
    microphone = mic(engine)
    speech = speak("Hello robot, please tell me a long story about the sea.")
    microphone.play(np.concatenate([silence(0.3), speech[:16000]]))
    assert engine.state == "user_speaking"  # the listener runs in the feeding thread
    engine.set_listening(False)
    cancelled = collect(engine, lambda e: isinstance(e, TurnCancelled))[-1]
    assert cancelled.reason == "cancel" and engine.state == "idle"


def test_callback_failures_are_counted_and_the_kept_ones_are_bounded(silero):
    calls = []

    def failing(event) -> None:
        calls.append(type(event).__name__)
        raise ValueError("x" * 10_000)  # a large message must not be kept whole

    engine = ConversationEngine(EchoResponder(seconds_per_word=0.01), EngineConfig(),
                                speech_probability=silero, callback=failing)
    try:
        for index in range(30):
            engine.request_turn(f"question {index}")
    finally:
        engine.stop(timeout=60)  # delivers what is queued, then ends the delivery thread
    errors = engine.callback_errors
    assert errors.count == len(calls) and errors.count > 30  # every turn has several events
    assert len(errors.recent) == errors.keep
    assert all(len(text) <= errors.max_chars for text in errors.recent)
    assert errors.recent[-1].startswith("ValueError: xxx")
