"""audio_capture_node records a (PulseAudio null-sink) microphone and publishes AudioChunks."""
from __future__ import annotations

import signal
import subprocess

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy

from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.executables import start_node

RATE = 16000


def test_a_tone_played_into_the_microphone_arrives_as_audio_chunks(pulse, ros_node, sound,
                                                                   tmp_path):
    chunks: list[AudioChunk] = []
    ros_node.create_subscription(AudioChunk, "audio/in", chunks.append,
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
    node = start_node("audio_capture_node", {"device": "pulse", "sample_rate": RATE,
                                             "chunk_s": 0.02, "frame_id": "mic_link"},
                      env=pulse.client_env(PULSE_SOURCE="mic_sink.monitor"))
    try:
        assert sound.spin_until(ros_node, lambda: len(chunks) >= 5, 20.0), "no audio/in"
        player = pulse.play(sound.write_tone(tmp_path / "a440.wav", 440.0, 1.0, RATE),
                            "mic_sink")
        player.wait(timeout=10)
        sound.spin_for(ros_node, 0.5)
        received_at_s = ros_node.get_clock().now().nanoseconds * 1e-9
    finally:
        node.send_signal(signal.SIGINT)
        assert node.wait(timeout=10) == 0
    first = chunks[0]
    assert (first.sample_rate, first.channels, first.encoding) == (RATE, 1, "S16LE")
    assert first.header.frame_id == "mic_link"
    samples = np.concatenate([audio_msg_to_pcm(c).samples[:, 0] for c in chunks])
    assert 0.7 <= sound.loud_seconds(samples, RATE) <= 1.3
    assert abs(sound.dominant_hz(sound.loud_part(samples, RATE), RATE) - 440.0) < 3.0
    assert [c.seq for c in chunks] == list(range(chunks[0].seq, chunks[0].seq + len(chunks)))
    stamps_s = np.array([c.header.stamp.sec + c.header.stamp.nanosec * 1e-9 for c in chunks])
    frames = np.array([len(c.data) // 2 for c in chunks])
    steps = np.diff(stamps_s)
    # Stamps advance by the audio they carry, not by callback jitter; corrections are slewed
    # back, never overlapping. An idle null-sink monitor really has gaps: stamps jump those.
    off_by = steps - frames[:-1] / RATE
    assert off_by.min() > -0.0015
    assert np.mean(np.abs(off_by) < 0.0015) > 0.8, off_by[np.abs(off_by) >= 0.0015]
    assert abs(stamps_s[-1] - received_at_s) < 0.5


def test_an_absent_device_is_reported_with_the_available_ones(pulse):
    node = start_node("audio_capture_node", {"device": "no_such_microphone"},
                      env=pulse.client_env(), stderr=subprocess.PIPE, text=True)
    _, stderr = node.communicate(timeout=20)
    assert node.returncode == 1
    assert "no_such_microphone" in stderr and "'pulse'" in stderr
