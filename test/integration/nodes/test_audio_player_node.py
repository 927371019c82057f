"""audio_player_node plays audio/out on a (PulseAudio null-sink) speaker and stops on request."""
from __future__ import annotations

import re
import signal

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.executables import start_node

REC_RATE = 16000


@pytest.fixture
def player(pulse, ros_node, sound, tmp_path):
    """The player node on spk_sink, a recorder on its monitor, and publishers to drive it."""
    node = start_node("audio_player_node", {"sound_device": "pulse", "jitter_buffer_s": 0.05},
                      env=pulse.client_env(PULSE_SINK="spk_sink"))
    audio_pub = ros_node.create_publisher(
        AudioChunk, "audio/out", QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
    state_pub = ros_node.create_publisher(NodeState, "state", QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL))
    stop = ros_node.create_client(Trigger, "audio_player/stop_speaking")
    recording = pulse.record("spk_sink.monitor", tmp_path / "speaker.raw", REC_RATE)
    try:
        assert sound.spin_until(ros_node, lambda: audio_pub.get_subscription_count() > 0
                                and state_pub.get_subscription_count() > 0
                                and stop.service_is_ready(), 60.0), "player did not come up"
        assert sound.spin_until_discovered(ros_node, "/audio_player", 120.0), "player deaf"
        yield audio_pub, state_pub, stop, recording
    finally:
        recording.stop()
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=120) == 0


def publish_tone(pub, sound, freq_hz: float, seconds: float, rate: int, turn_id: int,
                 first_seq: int = 0, final: bool = True) -> None:
    """Publish a tone as 0.1 s chunks of one turn, all at once (faster than real time)."""
    samples = sound.tone(freq_hz, seconds, rate)
    step = rate // 10
    for seq, start in enumerate(range(0, len(samples), step), first_seq):
        pub.publish(pcm_to_audio_msg(samples[start:start + step], rate, turn_id=turn_id, seq=seq,
                                     is_final=final and start + step >= len(samples)))


def test_tones_at_two_rates_are_played_in_order(player, ros_node, sound):
    audio_pub, _, _, recording = player
    publish_tone(audio_pub, sound, 440.0, 0.6, 22050, turn_id=1)
    publish_tone(audio_pub, sound, 880.0, 0.6, 16000, turn_id=2)  # stream reopens at 16 kHz
    sound.spin_until(ros_node, lambda: recording.loud_seconds() >= 1.2, 60.0)
    sound.spin_for(ros_node, 0.3)
    samples = recording.stop()
    # Played once, in order, each at its own rate (22050 Hz taken for 16000 Hz would shift a
    # tone by 38 %); a starved real-time sound server drops or repeats a few periods, which
    # moves a measured pitch by a few percent at most.
    assert 1.1 <= sound.loud_seconds(samples, REC_RATE) < 2.0
    loud = sound.loud_part(samples, REC_RATE)
    quarter = len(loud) // 4
    assert sound.tone_hz(loud[:quarter], REC_RATE) == pytest.approx(440.0, rel=0.05)
    assert sound.tone_hz(loud[-quarter:], REC_RATE) == pytest.approx(880.0, rel=0.05)


def interrupt_a_long_answer(ros_node, sound, audio_pub, recording, interrupt) -> float:
    """Play 4 s of turn 3, interrupt 0.3 s into it; return seconds that were played."""
    publish_tone(audio_pub, sound, 440.0, 4.0, 22050, turn_id=3, final=False)
    assert sound.spin_until(ros_node, lambda: recording.loud_seconds() >= 0.3, 60.0)
    interrupt()
    # Chunks of the interrupted turn that arrive late are not played either.
    publish_tone(audio_pub, sound, 440.0, 1.0, 22050, turn_id=3, first_seq=40)
    sound.spin_for(ros_node, 1.5)
    return sound.loud_seconds(recording.stop(), REC_RATE)


def test_stop_speaking_drops_queued_audio_and_the_rest_of_the_turn(player, ros_node, sound):
    audio_pub, _, stop, recording = player
    responses = []

    def call_stop() -> None:
        future = stop.call_async(Trigger.Request())
        assert sound.spin_until(ros_node, future.done, 60.0)
        responses.append(future.result())

    played = interrupt_a_long_answer(ros_node, sound, audio_pub, recording, call_stop)
    # How soon the stop lands depends on the machine's load; what was played and what was
    # dropped must still account for the 4 s queued (less what the sound server held), and the
    # late chunks of the turn are never played (not 5 s).
    assert 0.3 <= played < 2.0, played
    assert responses[0].success
    dropped_s = float(re.search(r"dropped ([\d.]+) s", responses[0].message).group(1))
    assert 3.0 <= played + dropped_s <= 4.8, (played, dropped_s)


def test_user_speaking_state_is_barge_in(player, ros_node, sound):
    audio_pub, state_pub, _, recording = player

    def user_speaks() -> None:
        state_pub.publish(NodeState(state=NodeState.USER_SPEAKING, label="user_speaking",
                                    turn_id=4, listening=True))

    played = interrupt_a_long_answer(ros_node, sound, audio_pub, recording, user_speaks)
    assert 0.3 <= played < 2.0, played  # stopped mid-turn; the late chunks are not played


def test_played_audio_is_reported_with_stamps_and_robot_speaking_spans_it(player, ros_node,
                                                                           sound):
    audio_pub, _, _, _ = player
    played, speaking = [], []
    ros_node.create_subscription(AudioChunk, "audio/played", played.append, QoSProfile(
        depth=500, reliability=ReliabilityPolicy.RELIABLE))
    ros_node.create_subscription(Bool, "robot_speaking", lambda m: speaking.append(m.data),
                                 QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                            durability=DurabilityPolicy.TRANSIENT_LOCAL))
    assert sound.spin_until(ros_node, lambda: speaking == [False], 60.0), speaking  # latched
    tone = sound.tone(440.0, 0.6, 22050)
    publish_tone(audio_pub, sound, 440.0, 0.6, 22050, turn_id=5)
    def all_played() -> bool:
        return sum(len(m.data) // 2 for m in played) >= len(tone) and speaking[-1] is False

    assert sound.spin_until(ros_node, all_played, 60.0), (speaking, len(played))
    # true from the first played sample to the last (a starved sound server may pause it)
    assert speaking[:2] == [False, True] and speaking[-1] is False
    # Every sample played exactly once, in order, all of turn 5, with stamps that advance.
    pcm = np.concatenate([np.frombuffer(bytes(m.data), "<i2") for m in played])
    expected = (np.clip(tone, -1, 32767 / 32768) * 32768).round().astype(np.int16)
    assert np.array_equal(pcm, expected)
    assert {(m.turn_id, m.sample_rate, m.channels) for m in played} == {(5, 22050, 1)}
    assert [m.seq for m in played] == list(range(played[0].seq, played[0].seq + len(played)))
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in played]
    # in order, up to the jitter of the device thread's wake-ups on a loaded machine
    assert all(later > earlier - 0.05 for earlier, later in zip(stamps, stamps[1:]))
    assert stamps[-1] > stamps[0]
