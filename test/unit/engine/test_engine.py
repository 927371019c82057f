"""ConversationEngine end to end with real speech, real silero-vad and the EchoResponder."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.config import ConversationConfig, EchoConfig, ListenConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.events import (EngineError, InputWarning, ResponseDelta, SpeechChunk,
                                           SpeechInterrupted, TranscriptFinal,
                                           TranscriptPartial, TurnCancelled, TurnFinished,
                                           TurnStarted)
from stream_omni_ros.errors import InputError

class GatedResponder(EchoResponder):
    """EchoResponder whose every output waits for a permit, so a test controls its progress."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Semaphore(0)
        self.steps: list[int] = []  # outputs produced, per response

    def begin_turn(self, request):
        self.steps.append(0)
        turn = len(self.steps) - 1
        for output in super().begin_turn(request):
            assert self.gate.acquire(timeout=60), "test never released the responder"
            self.steps[turn] += 1
            yield output


class FailingOnceResponder(EchoResponder):
    """Raises in its first turn, like a model running out of memory."""

    def begin_turn(self, request):
        if self.responses_started == 0:
            self.responses_started += 1
            raise RuntimeError("CUDA out of memory (simulated)")
        yield from super().begin_turn(request)


def silence(seconds: float) -> np.ndarray:
    """Digital silence at 16 kHz."""
    return np.zeros(int(seconds * 16000), np.float32)


def test_speech_turn_events_in_order_with_partials_before_the_endpoint(
        engine_factory, speak, mic, collect):
    engine = engine_factory()
    mic = mic(engine)
    engine.feed_image(np.full((8, 12, 3), 7, np.uint8), stamp=1005.5)
    speech = speak("Hello robot. Please look at the table and tell me what you see on it, "
                   "and whether the red cup is still there.")
    mic.play(silence(0.5))
    mic.play(speech[:32000])  # two seconds in: the user is still talking
    early = collect(engine, lambda e: isinstance(e, TranscriptPartial))
    mic.play(speech[32000:])
    mic.play(silence(1.0))
    events = early + collect(engine)
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "TurnStarted" and kinds[-1] == "TurnFinished"
    assert {e.turn_id for e in events} == {events[0].turn_id}
    final = kinds.index("TranscriptFinal")
    assert set(kinds[1:final]) == {"TranscriptPartial"}
    assert set(kinds[final + 1:-1]) == {"ResponseDelta", "SpeechChunk"}
    chunks = [e for e in events if isinstance(e, SpeechChunk)]
    assert [c.index for c in chunks] == list(range(len(chunks))) and chunks[-1].is_final
    transcript = events[final]
    assert transcript.end_stamp - transcript.start_stamp == pytest.approx(len(speech) / 16000,
                                                                          abs=0.35)
    done = events[-1]
    assert done.response == [e for e in events if isinstance(e, ResponseDelta)][-1].text
    assert done.response.endswith("showed 12x8.") and done.image_stamp == 1005.5
    assert done.metrics.endpoint_to_first_audio_s is not None
    assert done.metrics.audio_s == pytest.approx(sum(len(c.pcm) for c in chunks) / 22050)


def wait_for(predicate, what: str, timeout_s: float = 60.0) -> None:
    """Poll a condition of another thread's progress; fail naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# No loudspeaker echo (a headset): barge-in without a playback reference is asked for explicitly.
HEADSET = EchoConfig(without_reference="barge_in")


def test_barge_in_cancels_within_one_step_and_drops_unplayed_audio(
        engine_factory, speak, mic, collect, manual_clock):
    responder = GatedResponder()
    engine = engine_factory(responder, playback_clock=manual_clock(), echo=HEADSET)
    mic = mic(engine)
    stop_please = speak("Stop, stop please.", 0, 0)
    turn = engine.request_turn("tell me a very long story about a robot that loved tea")
    for _ in range(6):
        responder.gate.release()
    wait_for(lambda: responder.steps and responder.steps[0] == 6, "six responder outputs")
    mic.play(silence(0.3))
    mic.play(stop_please)
    assert engine.state == "user_speaking"
    steps_at_barge_in = responder.steps[0]
    for _ in range(100):
        responder.gate.release()
    mic.play(silence(1.0))
    # The worker starts the barge-in turn only after it has dropped the cancelled one's
    # unplayed audio: reading events before that could take chunks it was about to drop.
    wait_for(lambda: len(responder.steps) == 2, "the barge-in turn to start")
    events = collect(engine, lambda e: isinstance(e, TurnFinished) and e.turn_id != turn)
    cancelled = [e for e in events if isinstance(e, TurnCancelled)]
    assert [(e.turn_id, e.reason) for e in cancelled] == [(turn, "barge_in")]
    assert responder.steps[0] - steps_at_barge_in <= 1  # of about 30 outputs
    first_turn = [e for e in events if e.turn_id == turn]
    assert not [e for e in first_turn if isinstance(e, SpeechChunk)]  # unplayed: dropped
    assert cancelled[0].unplayed_s > 0
    later = events[events.index(cancelled[0]) + 1:]
    assert not [e for e in later if e.turn_id == turn]
    assert isinstance(later[0], TurnStarted) and later[-1].transcript.endswith("of speech)")


def test_barge_in_during_playback_interrupts_the_finished_turn(
        engine_factory, speak, mic, collect, manual_clock):
    speaker = manual_clock()
    engine = engine_factory(playback_clock=speaker, echo=HEADSET)
    mic = mic(engine)
    turn = engine.request_turn("one two three four five six seven eight nine ten")
    collect(engine)
    assert engine.state == "speaking"  # 12 words of 0.25 s: 3 s of audio to play
    speaker.advance(1.0)
    mic.play(speak("Wait."))
    mic.play(silence(1.0))
    events = collect(engine)
    interrupted = [e for e in events if isinstance(e, SpeechInterrupted)]
    assert [(e.turn_id, e.reason) for e in interrupted] == [(turn, "barge_in")]
    assert interrupted[0].unplayed_s == pytest.approx(3.0 - 1.0, abs=0.01)  # whole 1 s played
    assert isinstance(events[-1], TurnFinished) and events[-1].turn_id == turn + 1


def test_without_barge_in_speech_during_a_response_is_ignored(engine_factory, speak, mic, collect,
                                                             manual_clock):
    engine = engine_factory(listen=ListenConfig(barge_in=False), playback_clock=manual_clock())
    engine.request_turn("one two three four five six seven eight nine ten")
    collect(engine)
    mic(engine, 2000.0).play(np.concatenate([speak("Wait."), silence(1.0)]))
    warning = collect(engine, lambda e: isinstance(e, InputWarning))
    assert warning[-1].kind == "speech_ignored"
    assert engine.get_event(timeout=0.3) is None


def test_reset_clears_history(engine_factory, mic, collect):
    responder = EchoResponder()
    engine = engine_factory(responder)
    answers = []
    for text in ["first question", "second question"]:
        engine.request_turn(text)
        answers.append(collect(engine)[-1].response)
    assert "(turn 2)" in answers[1] and "(turn" not in answers[0]
    engine.reset()
    engine.request_turn("third question")
    events = collect(engine)
    assert "(turn" not in events[-1].response


def test_history_is_bounded_by_max_turns(engine_factory, mic, collect):
    engine = engine_factory(conversation=ConversationConfig(max_turns=2))
    for index in range(5):
        engine.request_turn(f"question {index}")
        last = collect(engine)[-1]
    assert "(turn 3)" in last.response


def test_bad_input_raises_and_the_next_turn_still_works(engine_factory, speak, mic, collect):
    engine = engine_factory(FailingOnceResponder())
    mic = mic(engine)
    with pytest.raises(InputError, match="NaN"):
        engine.feed_audio(PcmChunk(np.array([np.nan] * 4, "<f4").tobytes(), 16000, 1, "F32LE"))
    with pytest.raises(InputError, match="uint8"):
        engine.feed_image(np.zeros((4, 4, 3), np.float64), 1000.0)
    with pytest.raises(InputError, match="not a whole number"):
        engine.feed_audio(PcmChunk(b"\0\0\0", 16000))
    engine.request_turn("this turn fails inside the model")
    failed = collect(engine)
    assert isinstance(failed[-2], EngineError) and "out of memory" in failed[-2].message
    assert failed[-1].reason == "error"
    mic.play(np.concatenate([silence(0.3), speak("Can you hear me?"), silence(1.0)]))
    events = collect(engine)
    assert isinstance(events[-1], TurnFinished) and events[-1].response.startswith("You said")


def test_two_minute_monologue_is_cut_at_max_utterance(engine_factory, speak, mic, collect):
    # the question may come while the cut monologue's answer still plays: no loudspeaker echo
    engine = engine_factory(echo=HEADSET)
    mic = mic(engine)
    sentence = speak("I will now talk for a very long time about every robot I have ever met")
    repeats = int(np.ceil(120 * 16000 / len(sentence)))
    mic.play(np.concatenate([silence(0.3)] + [sentence] * repeats + [silence(1.0)]))
    events = collect(engine, timeout=20)
    warning = [e for e in events if isinstance(e, InputWarning) and e.kind == "max_utterance"]
    assert warning and "30.0 s" in warning[0].message
    final = [e for e in events if isinstance(e, TranscriptFinal)][0]
    assert final.truncated and final.text == "(30.0 s of speech)"
    assert final.end_stamp - final.start_stamp == pytest.approx(30.0)
    mic.play(np.concatenate([speak("And a question."), silence(1.0)]))
    assert isinstance(collect(engine)[-1], TurnFinished)


def test_on_request_mode_answers_only_when_armed(engine_factory, speak, mic, collect):
    engine = engine_factory(listen=ListenConfig(mode="on_request"))
    mic = mic(engine)
    utterance = np.concatenate([silence(0.3), speak("Robot, come here."), silence(1.0)])
    mic.play(utterance)
    assert engine.get_event(timeout=0.3) is None
    engine.request_turn()
    mic.play(utterance)
    assert isinstance(collect(engine)[-1], TurnFinished)


def test_push_to_talk_takes_exactly_the_audio_between_open_and_close(
        engine_factory, speak, mic, collect, manual_clock):
    clock = manual_clock()
    engine = engine_factory(listen=ListenConfig(mode="push_to_talk"), clock=clock)
    mic = mic(engine, clock=clock)
    now_it_is = speak("Now it is.")
    mic.play(speak("This is not meant for the robot."))
    pressed = clock()
    turn = engine.open_turn()
    mic.play(silence(2.0))  # pauses do not end a push-to-talk turn
    mic.play(now_it_is)
    engine.close_turn()
    events = collect(engine)
    assert events[0].turn_id == turn and events[0].source == "push_to_talk"
    final = [e for e in events if isinstance(e, TranscriptFinal)][0]
    assert final.start_stamp == pytest.approx(pressed)
    assert final.end_stamp == pytest.approx(clock())
    assert final.text == f"({2.0 + len(now_it_is) / 16000:.1f} s of speech)"


def test_push_to_talk_answers_audio_that_arrives_after_the_release(engine_factory, mic, collect,
                                                                    manual_clock):
    clock = manual_clock()
    engine = engine_factory(listen=ListenConfig(mode="push_to_talk", late_audio_wait_s=3600.0),
                            clock=clock)
    microphone = mic(engine, clock=clock)
    microphone.play(silence(0.2))
    turn = engine.open_turn()
    microphone.play(silence(0.5))
    late = mic(engine, microphone.stamp)  # the next 0.5 s is delayed on its way
    late.seq = microphone.seq
    engine.close_turn(stamp=microphone.stamp + 0.5)
    assert engine.state == "user_speaking"  # the turn waits for its audio
    late.play(np.concatenate([silence(0.5), silence(0.3)]))
    events = collect(engine)
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert (final.turn_id, final.text) == (turn, "(1.0 s of speech)")
    assert final.end_stamp - final.start_stamp == pytest.approx(1.0)
    assert not [e for e in events if isinstance(e, InputWarning)]


def test_push_to_talk_release_waits_a_bounded_time_and_says_so(engine_factory, mic, collect,
                                                               manual_clock):
    clock = manual_clock()
    engine = engine_factory(listen=ListenConfig(mode="push_to_talk", late_audio_wait_s=0.05),
                            clock=clock)
    microphone = mic(engine, clock=clock)
    turn = engine.open_turn()
    microphone.play(silence(0.5))
    engine.close_turn(stamp=clock() + 0.3)  # 0.3 s of audio that never comes
    events = collect(engine)
    warning = next(e for e in events if isinstance(e, InputWarning))
    assert (warning.turn_id, warning.kind) == (turn, "late_audio_wait_expired")
    assert "300 ms" in warning.message
    final = next(e for e in events if isinstance(e, TranscriptFinal))
    assert final.text == "(0.5 s of speech)"


def test_cancel_stops_the_turn_and_engine_keeps_answering(engine_factory, mic, collect):
    responder = GatedResponder()
    engine = engine_factory(responder)
    turn = engine.request_turn("count to twenty please")
    responder.gate.release()
    collect(engine, lambda e: isinstance(e, ResponseDelta))
    engine.cancel()
    for _ in range(100):
        responder.gate.release()
    events = collect(engine)
    assert (events[-1].turn_id, events[-1].reason) == (turn, "cancel")
    engine.request_turn("still there?")
    assert isinstance(collect(engine)[-1], TurnFinished)


def test_cancel_turn_stops_only_that_turn(engine_factory, collect):
    responder = GatedResponder()
    engine = engine_factory(responder)
    first = engine.request_turn("count to twenty please")
    queued = engine.request_turn("and then to thirty")
    last = engine.request_turn("and then stop")
    responder.gate.release()
    collect(engine, lambda e: isinstance(e, ResponseDelta))
    engine.cancel_turn(queued)
    for _ in range(300):
        responder.gate.release()
    events = collect(engine, lambda e: isinstance(e, (TurnFinished, TurnCancelled))
                     and e.turn_id == last)
    ends = [(e.turn_id, type(e).__name__) for e in events
            if isinstance(e, (TurnFinished, TurnCancelled))]
    assert ends == [(first, "TurnFinished"), (queued, "TurnCancelled"), (last, "TurnFinished")]
    assert [e.reason for e in events if isinstance(e, TurnCancelled)] == ["cancel"]
    assert not [e for e in events if e.turn_id == queued and isinstance(e, ResponseDelta)]


def test_engine_does_not_import_rclpy():
    code = "import sys, stream_omni_ros.engine.engine; assert 'rclpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
