"""audio_sink_node writes one WAV per turn; a turn that pauses past idle_timeout_s goes on."""
from __future__ import annotations

import json

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.executables import start_node, stop_node

RATE = 22050
RELIABLE = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)


def test_a_turn_that_pauses_past_the_idle_limit_continues_in_a_second_file_losing_nothing(
        ros_node, sound, tmp_path):
    """A slow producer (a loaded CPU) pauses longer than idle_timeout_s in the middle of a
    turn: the first part is written at the limit, the rest goes to the turn's next file, and
    no chunk counts as lost. The sink runs on a simulated clock the test moves."""
    clock = ros_node.create_publisher(Clock, "/clock", 10)
    audio = ros_node.create_publisher(AudioChunk, "audio/out", RELIABLE)
    sink = start_node("audio_sink_node", {"use_sim_time": True, "output_dir": str(tmp_path),
                                          "idle_timeout_s": 1.0})
    try:
        assert sound.spin_until(ros_node, lambda: audio.get_subscription_count() > 0, 120)
        assert sound.spin_until_discovered(ros_node, "/audio_sink", 120)
        sound.publish_clock(clock, 100.0)
        tone = sound.tone(440.0, 0.3, RATE)[:, None]
        for seq in range(2):
            audio.publish(pcm_to_audio_msg(tone, RATE, encoding="F32LE", turn_id=3, seq=seq))
        first = tmp_path / "turn_0003_000.wav"
        for step in range(1, 100):  # the clock runs past the idle limit, 0.1 s a step
            sound.publish_clock(clock, 100.0 + 0.1 * step)
            if sound.spin_until(ros_node, first.exists, 0.05):
                break
        assert sound.wait_for_file(first, sink, ros_node, 120)
        audio.publish(pcm_to_audio_msg(tone, RATE, encoding="F32LE", turn_id=3, seq=2,
                                       is_final=True))
        assert sound.wait_for_file(tmp_path / "turn_0003_001.wav", sink, ros_node, 120)
    finally:
        assert stop_node(sink) == 0
    parts = [json.loads(line) for line in (tmp_path / "turns.jsonl").read_text().splitlines()]
    assert [(p["file"], p["chunks"], p["lost_chunks"]) for p in parts] == [
        ("turn_0003_000.wav", 2, 0), ("turn_0003_001.wav", 1, 0)]
    assert np.isclose(sum(p["audio_s"] for p in parts), 0.9, atol=0.01)
