"""Stop signals reach nodes whose timers run on a stopped simulation clock; open WAVs are kept."""
from __future__ import annotations

import signal
import subprocess

import numpy as np
import pytest
import soundfile
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.executables import start_node

RATE = 22050
RELIABLE = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
STOP_SEQUENCES = {"sigint": (signal.SIGINT,),
                  "sigint twice, then sigterm": (signal.SIGINT, signal.SIGINT, signal.SIGTERM),
                  "sigterm": (signal.SIGTERM,)}


def stop(process: subprocess.Popen, signals: tuple[int, ...]) -> tuple[int, str]:
    """Send the signals back to back; the exit status and stderr (killed after 20 s: -9)."""
    for signum in signals:
        process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    return process.returncode, stderr


@pytest.mark.parametrize("sequence", sorted(STOP_SEQUENCES))
def test_audio_sink_writes_the_open_turn_when_stopped_with_the_clock_stopped(
        ros_node, sound, tmp_path, sequence):
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    audio = ros_node.create_publisher(AudioChunk, "audio/out", RELIABLE)
    sink = start_node("audio_sink_node", {"use_sim_time": True, "output_dir": str(tmp_path),
                                          "idle_timeout_s": 1.0},
                      stderr=subprocess.PIPE, text=True)
    try:
        assert sound.spin_until(ros_node, lambda: audio.get_subscription_count() > 0, 120)
        assert sound.spin_until_discovered(ros_node, "/audio_sink", 120)
        for step in range(5):  # the simulator runs a little, then stops (paused or exited)
            sound.publish_clock(clock, 100.0 + 0.1 * step)
        open_turn = sound.tone(440.0, 0.5, RATE)
        for seq, part in enumerate(np.split(open_turn, 5)):
            audio.publish(pcm_to_audio_msg(part[:, None], RATE, encoding="F32LE", turn_id=7,
                                           seq=seq))
        # A finished turn after it: once its file exists, the open turn's chunks were taken.
        audio.publish(pcm_to_audio_msg(sound.tone(880.0, 0.1, RATE)[:, None], RATE,
                                       encoding="F32LE", turn_id=8, seq=0, is_final=True))
        assert sound.wait_for_file(tmp_path / "turn_0008_000.wav", sink, ros_node, 120)
    finally:
        status, stderr = stop(sink, STOP_SEQUENCES[sequence])
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr
    written, rate = soundfile.read(tmp_path / "turn_0007_001.wav", dtype="float32")
    assert rate == RATE and written.shape == open_turn.shape
    assert np.abs(written - open_turn).max() < 1e-4  # 16-bit PCM of what was sent


def test_wav_source_stops_at_once_while_the_clock_stands_still(ros_node, sound, tmp_path):
    wav = sound.write_tone(tmp_path / "tone.wav", 440.0, 2.0)
    received: list[AudioChunk] = []
    ros_node.create_subscription(AudioChunk, "audio/in", received.append, RELIABLE)
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    source = start_node("wav_source_node", {"use_sim_time": True, "files": [str(wav)],
                                            "loop": True},
                        stderr=subprocess.PIPE, text=True)
    try:
        sim_s = 50.0

        def advance() -> bool:
            nonlocal sim_s
            sim_s += 0.02
            sound.publish_clock(clock, sim_s)
            return len(received) >= 5
        # From here on the clock stands still: nothing publishes /clock any more.
        assert sound.spin_until(ros_node, advance, 120), "no audio/in while the clock ran"
    finally:
        status, stderr = stop(source, (signal.SIGINT,))
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr


def test_wav_source_without_files_names_the_parameter(tmp_path):
    source = start_node("wav_source_node", {}, stderr=subprocess.PIPE, text=True)
    _, stderr = source.communicate(timeout=120)
    assert source.returncode == 1
    assert "parameter 'files' names no sound file" in stderr and "Traceback" not in stderr
