"""Echo canceller parts: reference window, stamps alignment, pass-through and the fallback."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.bench import echo as echo_bench
from stream_omni_ros.engine.audio_input import AudioFrontEnd, PcmChunk
from stream_omni_ros.engine.config import EchoConfig
from stream_omni_ros.engine.echo import (EchoCanceller, EchoReport, ReferenceBuffer,
                                         float_to_pcm16)
from stream_omni_ros.engine.events import InputWarning, SpeechInterrupted, TurnFinished
from stream_omni_ros.engine.simulated_room import SimulatedRoom
from stream_omni_ros.errors import ConfigError, InputError


def test_reference_window_keeps_the_newest_samples_and_reads_silence_elsewhere():
    buffer = ReferenceBuffer(100)
    buffer.write(np.arange(1, 61, dtype=np.float32), 0)
    buffer.write(np.full(60, -1.0, np.float32), 80)  # slides the window to [40, 140)
    assert np.array_equal(buffer.read(30, 20), np.r_[np.zeros(10), np.arange(41, 51)])
    assert np.array_equal(buffer.read(60, 30), np.r_[np.zeros(20), -np.ones(10)])
    assert not buffer.read(200, 10).any()


def test_without_reference_audio_passes_unchanged_and_whole():
    canceller = EchoCanceller(EchoConfig())
    samples = np.linspace(-0.5, 0.5, 250, dtype=np.float32)
    out, first = canceller.process(samples, 0, now=0.0)
    assert first == 0 and np.array_equal(out, samples)
    assert not canceller.live(0.0)


def test_played_audio_is_placed_by_stamps_on_the_microphone_timeline():
    front_end, canceller = AudioFrontEnd(), EchoCanceller(EchoConfig())
    front_end.convert(PcmChunk(float_to_pcm16(np.zeros(1600)), 16000, stamp=50.0))
    tone = 0.25 * np.ones(441, np.float32)  # 20 ms at 22050 Hz, 0.05 s after the mic began
    assert canceller.add_played(PcmChunk(float_to_pcm16(tone), 22050, stamp=50.05), 50.1,
                                front_end)
    later = PcmChunk(float_to_pcm16(np.zeros(160)), 16000, stamp=50.5)  # another run begins
    assert canceller.add_played(later, 50.5, front_end)
    placed = canceller.reference.read(0, 1600)
    loud = np.flatnonzero(np.abs(placed) > 0.2)
    assert abs(loud[0] - 800) <= 16 and abs(len(loud) - 320) <= 32  # at 0.05 s, 20 ms long
    assert canceller.live(50.1) and not canceller.live(50.1 + 31.0)  # reference_timeout_s


def test_unplaceable_or_malformed_played_audio():
    front_end, canceller = AudioFrontEnd(), EchoCanceller(EchoConfig())
    chunk = PcmChunk(float_to_pcm16(np.zeros(160)), 16000, stamp=10.0)
    assert not canceller.add_played(chunk, 10.0, front_end)  # the microphone has no stamps yet
    with pytest.raises(InputError, match="encoding"):
        canceller.add_played(PcmChunk(b"\0\0", 16000, encoding="MP3", stamp=1.0), 1.0,
                             front_end)
    with pytest.raises(ConfigError, match="echo.without_reference"):
        EchoConfig(without_reference="maybe")


def test_cancellation_cost_and_erle_in_the_simulated_room():
    cost, erle = echo_bench.run(8.0)
    print(f"echo cancellation: {cost:.2%} of a core, ERLE {erle:.1f} dB")
    assert erle >= 20.0 and cost > 0


def test_report_counts_cancelled_frames_and_convergence_follows_the_played_audio():
    pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")
    front_end, room = AudioFrontEnd(), SimulatedRoom()
    canceller = EchoCanceller(EchoConfig(converge_s=1.0))
    assert canceller.report(0.0) == EchoReport(False, 0, None, "")
    room.speak(echo_bench.speech_like(4.0))
    converged_at = None
    for index in range(400):
        mic, played = room.step(160)
        stamp = 1000.0 + index / 100
        converted = front_end.convert(PcmChunk(float_to_pcm16(mic), 16000, stamp=stamp))
        canceller.add_played(PcmChunk(float_to_pcm16(played), 16000, stamp=stamp), stamp,
                             front_end)
        canceller.process(converted.samples, converted.first_sample, stamp)
        if converged_at is None and canceller.converged(stamp):
            converged_at = canceller.frames
    report = canceller.report(1004.0)
    assert converged_at == 100  # echo.converge_s of frames with the robot speaking
    assert report.live and report.frames == canceller.stats.frames > 100
    assert report.recent_erle_db == pytest.approx(canceller.stats.erle_db())  # all recent
    assert not canceller.converged(1004.0 + 31.0)  # the reference is no longer live


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def test_without_reference_speech_during_playback_does_not_barge_in_and_says_why(
        engine_factory, speak, mic, collect, manual_clock):
    speaker = manual_clock()
    engine = engine_factory(playback_clock=speaker)  # echo.without_reference = no_barge_in
    mic = mic(engine)
    turn = engine.request_turn("one two three four five six seven eight nine ten")
    collect(engine)
    speaker.advance(1.0)
    for _ in range(2):
        mic.play(speak("Wait."))
        mic.play(silence(0.6))
    assert engine.state == "speaking"
    speaker.advance(3.0)
    mic.play(silence(0.1))
    events = []
    while (event := engine.get_event(timeout=0.5)) is not None:
        events.append(event)
    assert not [e for e in events if isinstance(e, (SpeechInterrupted, TurnFinished))]
    warnings = [e for e in events if isinstance(e, InputWarning)]
    assert [w.kind for w in warnings] == ["no_echo_reference"]  # once, not per utterance
    assert "audio/played" in warnings[0].message and turn == 1


def room_streams(seconds: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """10 ms steps of (microphone, played) audio of speech-like noise echoed by the room."""
    room = SimulatedRoom()
    rng = np.random.default_rng(3)
    room.speak((0.3 * rng.standard_normal(int(seconds * 16000))).astype(np.float32))
    steps = [room.step(160) for _ in range(int(seconds * 100))]
    return [mic for mic, _ in steps], [played for _, played in steps]


STALL_FROM = 100  # 10 ms step at which the player's reports stop arriving (a busy robot)


def reported_at(step: int, stall_steps: int) -> list[int]:
    """The steps whose played audio the player's report delivers at `step`."""
    end = STALL_FROM + stall_steps
    if STALL_FROM <= step < end:
        return []
    return list(range(STALL_FROM, end + 1)) if step == end and stall_steps else [step]


def cancel_in_room(stall_steps: int, wait_s: float = 0.5, first_report: int = 0, lag: int = 0
                   ) -> tuple[np.ndarray, EchoCanceller]:
    """Run the canceller on the room's streams; the reference stalls for `stall_steps` steps
    from STALL_FROM and then arrives all at once; each report comes `lag` steps late, and none
    about the steps before `first_report`."""
    pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")
    mics, played = room_streams(3.0)
    front_end, canceller = AudioFrontEnd(), EchoCanceller(EchoConfig(reference_wait_s=wait_s))
    out: list[np.ndarray] = []
    for step, mic in enumerate(mics):
        now = 100.0 + step / 100  # caller clock: the microphone arrives in real time
        converted = front_end.convert(PcmChunk(float_to_pcm16(mic), 16000, stamp=now))
        for was in (w - lag for w in reported_at(step, stall_steps) if w - lag >= first_report):
            chunk = PcmChunk(float_to_pcm16(played[was]), 16000, stamp=100.0 + was / 100)
            assert canceller.add_played(chunk, now, front_end)
        samples, _ = canceller.process(converted.samples, converted.first_sample, now,
                                       expecting=True)
        out.append(samples)
    return np.concatenate(out), canceller


def test_microphone_audio_waits_for_a_late_reference_and_is_cancelled_in_order():
    on_time, _ = cancel_in_room(stall_steps=0)
    late, canceller = cancel_in_room(stall_steps=20)  # 200 ms without reports, then all
    # the held frames came out once their reference arrived, in stamp order, cancelled exactly
    # as with an on-time reference: nothing was let through without it
    assert canceller.stats.waits_expired == 0
    assert np.array_equal(late, on_time)
    assert canceller.stats.erle_db() >= 10.0


def test_a_reference_always_a_little_late_is_waited_for_without_expiring():
    # 0.8 s without a player, then every report 50 ms late
    _, canceller = cancel_in_room(stall_steps=0, first_report=80, lag=5)
    assert canceller.stats.waits_expired == 0


def test_the_wait_for_a_late_reference_is_bounded_and_counted():
    late, canceller = cancel_in_room(stall_steps=30, wait_s=0.1)  # 300 ms stall, 100 ms wait
    assert canceller.stats.waits_expired == 1
    assert len(late) == 300 * 160  # all of it went on, in order


def test_nothing_waits_once_the_player_ended_its_run():
    pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")
    front_end, canceller = AudioFrontEnd(), EchoCanceller(EchoConfig())
    tone = float_to_pcm16(0.1 * np.ones(160, np.float32))
    front_end.convert(PcmChunk(float_to_pcm16(np.zeros(160)), 16000, stamp=5.0))
    canceller.add_played(PcmChunk(tone, 16000, stamp=5.01), 5.0, front_end)
    mic = front_end.convert(PcmChunk(float_to_pcm16(np.zeros(480)), 16000, stamp=5.01))
    out, first = canceller.process(mic.samples, mic.first_sample, 5.02)
    assert (first, len(out)) == (160, 160)  # the run is open: frames past it wait
    canceller.add_played(PcmChunk(tone, 16000, stamp=5.02), 5.03, front_end, last=True)
    mic = front_end.convert(PcmChunk(float_to_pcm16(np.zeros(160)), 16000, stamp=5.04))
    out, first = canceller.process(mic.samples, mic.first_sample, 5.04)
    assert (first, len(out)) == (320, 480)  # ended: the held rest goes on without waiting
    assert canceller.stats.waits_expired == 0
