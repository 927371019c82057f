"""audio_capture_node records a (PulseAudio null-sink) microphone and publishes AudioChunks."""
from __future__ import annotations

import signal
import subprocess
import threading

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.executables import start_node

RATE = 16000


class LineReader:
    """Collects a process's text stream in a thread, so a test can wait for a log line."""

    def __init__(self, stream) -> None:
        self._lines: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._lines.append(line)

    def text(self) -> str:
        """What the process wrote so far."""
        return "".join(list(self._lines))


def test_a_tone_played_into_the_microphone_arrives_as_audio_chunks(pulse, ros_node, sound,
                                                                   tmp_path):
    chunks: list[AudioChunk] = []
    ros_node.create_subscription(AudioChunk, "audio/in", chunks.append,
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
    node = start_node("audio_capture_node", {"sound_device": "pulse", "sample_rate": RATE,
                                             "chunk_s": 0.02, "frame_id": "mic_link"},
                      env=pulse.client_env(PULSE_SOURCE="mic_sink.monitor"))
    try:
        assert sound.spin_until(ros_node, lambda: len(chunks) >= 5, 60.0), "no audio/in"
        player = pulse.play(sound.write_tone(tmp_path / "a440.wav", 440.0, 1.0, RATE),
                            "mic_sink")
        player.wait(timeout=120)
        sound.spin_for(ros_node, 0.5)
        received_at_s = ros_node.get_clock().now().nanoseconds * 1e-9
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=120) == 0
    first = chunks[0]
    assert (first.sample_rate, first.channels, first.encoding) == (RATE, 1, "S16LE")
    assert first.header.frame_id == "mic_link"
    samples = np.concatenate([audio_msg_to_pcm(c).samples[:, 0] for c in chunks])
    assert 0.7 <= sound.loud_seconds(samples, RATE) <= 1.3
    # within a few percent: a busy sound server drops or repeats periods; a wrong rate is 3x
    assert abs(sound.tone_hz(sound.loud_part(samples, RATE), RATE) - 440.0) < 0.05 * 440.0
    assert [c.seq for c in chunks] == list(range(chunks[0].seq, chunks[0].seq + len(chunks)))
    stamps_s = np.array([c.header.stamp.sec + c.header.stamp.nanosec * 1e-9 for c in chunks])
    frames = np.array([len(c.data) // 2 for c in chunks])
    steps = np.diff(stamps_s)
    # Stamps advance by the audio they carry, not by callback jitter; corrections are slewed
    # back, never overlapping. An idle null-sink monitor really has gaps: stamps jump those.
    off_by = steps - frames[:-1] / RATE
    assert off_by.min() > -0.0015
    assert np.mean(np.abs(off_by) < 0.0015) > 0.8, off_by[np.abs(off_by) >= 0.0015]
    assert abs(stamps_s[-1] - received_at_s) < 2.0  # the node clock, however late delivered


def test_an_absent_device_is_reported_with_the_available_ones(pulse):
    node = start_node("audio_capture_node", {"sound_device": "no_such_microphone"},
                      env=pulse.client_env(), stderr=subprocess.PIPE, text=True)
    _, stderr = node.communicate(timeout=120)
    assert node.returncode == 1
    assert "no_such_microphone" in stderr and "'pulse'" in stderr


def test_sim_time_at_zero_drops_audio_until_the_clock_runs(pulse, ros_node, sound):
    chunks: list[AudioChunk] = []
    ros_node.create_subscription(AudioChunk, "audio/in", chunks.append,
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    node = start_node("audio_capture_node", {"sound_device": "pulse", "use_sim_time": True},
                      env=pulse.client_env(PULSE_SOURCE="mic_sink.monitor"),
                      stderr=subprocess.PIPE, text=True)
    log = LineReader(node.stderr)
    try:
        # No /clock yet: the microphone runs, the node says so once and publishes nothing.
        assert sound.spin_until(ros_node, lambda: "clock reads 0" in log.text()
                                or node.poll() is not None, 120), log.text()
        assert node.poll() is None and not chunks, log.text()
        sim_s = 100.0

        def tick() -> bool:
            nonlocal sim_s
            sim_s += 0.01
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = int(sim_s), int(sim_s % 1 * 1e9)
            clock.publish(msg)
            return len(chunks) >= 5
        assert sound.spin_until(ros_node, tick, 120), log.text()
    finally:
        node.send_signal(signal.SIGINT)
        status = node.wait(timeout=120)
    assert status == 0, log.text()
    first_s = chunks[0].header.stamp.sec + chunks[0].header.stamp.nanosec * 1e-9
    assert 99.0 < first_s <= sim_s  # stamped on the simulation clock once it ran
    assert log.text().count("clock reads 0") == 1 and "Traceback" not in log.text()
