"""Engine options: half duplex, live reconfiguration, callback delivery, input warnings."""
from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import (ConversationConfig, EngineConfig, ImageConfig,
                                           ListenConfig)
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (InputWarning, TranscriptFinal, TurnFinished,
                                           TurnStarted)
from stream_omni_ros.errors import StreamOmniError


def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(int(seconds * 16000), np.float32)


def test_half_duplex_ignores_the_mic_while_the_robot_speaks(engine_factory, mic, collect,
                                                            speak, manual_clock):
    speaker = manual_clock()
    engine = engine_factory(listen=ListenConfig(half_duplex=True), playback_clock=speaker)
    utterance = np.concatenate([speak("Hello there."), silence(1.0)])
    engine.request_turn("one two three")  # 1.25 s of audio to play
    collect(engine)
    mic(engine).play(utterance)
    assert engine.get_event(timeout=0.3) is None  # no barge-in, no new turn
    assert engine.state == "speaking"
    speaker.advance(1.25)
    assert engine.state == "listening"
    mic(engine, 2000.0).play(utterance)
    assert isinstance(collect(engine)[-1], TurnFinished)


def test_reconfigure_switches_listen_mode_live(engine_factory, mic, collect, speak,
                                               manual_clock):
    speaker = manual_clock()
    engine = engine_factory(playback_clock=speaker)
    utterance = np.concatenate([silence(0.3), speak("Robot, come here."), silence(1.0)])
    microphone = mic(engine)
    microphone.play(utterance)
    assert isinstance(collect(engine)[-1], TurnFinished)
    speaker.advance(60.0)  # the answer has been played
    engine.reconfigure(dataclasses.replace(engine.config, listen=ListenConfig(mode="on_request")))
    assert engine.state == "idle"
    microphone.play(utterance)
    assert engine.get_event(timeout=0.3) is None
    engine.request_turn()
    assert engine.state == "listening"
    microphone.play(utterance)
    assert isinstance(collect(engine)[-1], TurnFinished)


def test_history_is_bounded_by_its_token_budget(engine_factory, collect):
    # EchoResponder counts words as tokens: exchanges here are 6, then 8 "tokens" long
    engine = engine_factory(conversation=ConversationConfig(max_history_tokens=16))
    for index in range(4):
        engine.request_turn(f"question {index}")
        last = collect(engine)[-1]
    assert last.response.endswith("(turn 3)")  # two exchanges (16 tokens) fit, three do not


def test_callback_receives_every_event_in_order(silero):
    received, finished = [], threading.Event()

    def on_event(event) -> None:
        received.append(event)
        if isinstance(event, TurnFinished):
            finished.set()

    engine = ConversationEngine(EchoResponder(), EngineConfig(), speech_probability=silero,
                                callback=on_event)
    try:
        turn = engine.request_turn("hello robot")
        assert finished.wait(60)
    finally:
        engine.stop()
    assert isinstance(received[0], TurnStarted) and received[0].turn_id == turn
    assert {e.turn_id for e in received} == {turn}


def test_gaps_and_clipping_are_reported(engine_factory, collect):
    engine = engine_factory()
    loud = np.full(640, 32767, "<i2").tobytes()
    engine.feed_audio(PcmChunk(loud, 16000, seq=1))
    engine.feed_audio(PcmChunk(loud, 16000, seq=4))
    warnings = collect(engine, lambda e: isinstance(e, InputWarning) and e.kind == "gap")
    kinds = [w.kind for w in warnings if isinstance(w, InputWarning)]
    assert kinds[0] == "clipping" and "100.0%" in warnings[0].message
    assert "80 ms" in warnings[-1].message


def test_stop_ends_the_event_stream_and_refuses_more_input(silero):
    engine = ConversationEngine(EchoResponder(), EngineConfig(), speech_probability=silero,
                                playback_clock=lambda: 0.0)  # its answer is still playing
    engine.request_turn("hello")
    collected = []
    reader = threading.Thread(target=lambda: collected.extend(engine.events()))
    reader.start()
    deadline = time.monotonic() + 60
    while not any(isinstance(e, TurnFinished) for e in collected):
        assert time.monotonic() < deadline, "the turn did not finish"
        time.sleep(0.01)
    engine.stop()
    reader.join(60)
    assert not reader.is_alive()  # the iterator ended with the engine
    assert [type(e).__name__ for e in collected][-2:] == ["TurnFinished", "SpeechInterrupted"]
    assert collected[-1].reason == "stop"  # a sink stops playing what it still holds
    with pytest.raises(StreamOmniError, match="stopped"):
        engine.feed_audio(PcmChunk(b"\0\0", 16000))


@pytest.mark.parametrize("frame_at", ["speech_start", "utterance_end"])
def test_spoken_turn_takes_its_frame_at_the_configured_moment(engine_factory, mic, collect,
                                                              speak, frame_at):
    responder = EchoResponder(seconds_per_word=0.01)
    engine = engine_factory(responder, image=ImageConfig(frame_at=frame_at))
    speech = speak("Please look at the table and tell me what you see.")
    end_stamp = 1000.5 + len(speech) / 16000
    engine.feed_image(np.full((8, 12, 3), 1, np.uint8), stamp=1000.4)  # as the user starts
    engine.feed_image(np.full((6, 10, 3), 2, np.uint8), stamp=end_stamp + 0.1)
    mic(engine).play(np.concatenate([silence(0.5), speech, silence(1.0)]))
    done = collect(engine)[-1]
    assert isinstance(done, TurnFinished)
    prepared_image = responder.prepared[2]
    if frame_at == "speech_start":
        assert done.image_stamp == 1000.4 and done.response.endswith("showed 12x8.")
        assert prepared_image is not None and prepared_image.shape == (8, 12, 3)
    else:
        assert done.image_stamp == end_stamp + 0.1 and done.response.endswith("showed 10x6.")
        assert prepared_image is None  # nothing of the frame is known before the endpoint


def test_unknown_frame_moment_is_named():
    with pytest.raises(StreamOmniError, match="frame_at"):
        ImageConfig(frame_at="whenever")


def test_push_to_talk_pressed_before_any_audio_still_stamps_the_utterance(engine_factory, mic,
                                                                          collect,
                                                                          manual_clock):
    clock = manual_clock(1000.0)
    engine = engine_factory(EchoResponder(seconds_per_word=0.01), clock=clock,
                            listen=ListenConfig(mode="push_to_talk"))
    engine.open_turn()  # the first audio sample arrives only after the press
    mic(engine, 1000.0, clock=clock).play(silence(1.0))
    engine.close_turn()
    events = collect(engine)
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert final.start_stamp == 1000.0 and final.end_stamp == pytest.approx(1001.0)
    assert not [e for e in events if isinstance(e, InputWarning)]


def test_push_to_talk_on_a_source_without_stamps_follows_arrival(engine_factory, collect):
    engine = engine_factory(EchoResponder(seconds_per_word=0.01),
                            listen=ListenConfig(mode="push_to_talk"))
    engine.open_turn()
    for _ in range(25):  # an unpaced file: 1 s of audio, no stamps, as fast as it can
        engine.feed_audio(PcmChunk(bytes(1280), 16000))
    engine.close_turn()
    events = collect(engine)
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert final.text == "(1.0 s of speech)"
    assert not [e for e in events if isinstance(e, InputWarning)]
