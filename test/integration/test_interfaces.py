"""The public interfaces: generated, importable, documented, and carried by real DDS."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from stream_omni_ros.action import Converse
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.nodes.omni_action import goal_to_turn_options

ROOT = Path(__file__).resolve().parents[2]
PEER = Path(__file__).with_name("roundtrip_peer.py")


def sample_audio_chunk() -> AudioChunk:
    msg = AudioChunk(sample_rate=22050, channels=1, encoding=AudioChunk.ENCODING_F32LE,
                     turn_id=7, seq=3, is_final=True)
    msg.header.stamp = Time(sec=12, nanosec=345)
    msg.header.frame_id = "speaker"
    msg.data = np.linspace(-1, 1, 64, dtype="<f4").tobytes()
    return msg


def samples() -> dict[str, object]:
    """One non-default message of every public type, keyed by `module:Class`."""
    transcript = Transcript(turn_id=7, seq=2, text="what is on the table? ça va", is_final=True,
                            audio_start=Time(sec=1), audio_end=Time(sec=3, nanosec=5))
    response = ResponseText(turn_id=7, seq=4, delta=" red.", text="The cup is red.",
                            is_final=True, stop_reason="eos", used_image=True,
                            image_stamp=Time(sec=2), image_frame_id="camera")
    state = NodeState(state=NodeState.SPEAKING, label="speaking", turn_id=7, listening=True)
    image = Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(18)))
    goal = Converse.Goal(text="hello", audio=[sample_audio_chunk()], images=[image],
                         use_camera=False, speak=False, temperature=0.5, max_new_tokens=64)
    # 0.0625 is exact in float32, so the round trip compares equal.
    result = Converse.Result(turn_id=7, transcript="hi", response="hello there",
                             stop_reason="eos", endpoint_to_first_token_s=0.0625, text_tokens=3)
    feedback = Converse.Feedback(turn_id=7, state=NodeState.THINKING, response_delta="hel")
    return {"stream_omni_ros.msg:AudioChunk": sample_audio_chunk(),
            "stream_omni_ros.msg:Transcript": transcript,
            "stream_omni_ros.msg:ResponseText": response,
            "stream_omni_ros.msg:NodeState": state,
            "stream_omni_ros.action:Converse.Goal": goal,
            "stream_omni_ros.action:Converse.Result": result,
            "stream_omni_ros.action:Converse.Feedback": feedback}


def test_goal_defaults_mean_node_defaults():
    goal = Converse.Goal()
    assert goal.use_camera and goal.speak and not goal.reset_history
    assert goal.temperature < 0 and goal.top_p <= 0 and goal.max_new_tokens <= 0
    assert goal.max_new_units <= 0
    assert goal_to_turn_options(goal) == TurnOptions()


def test_goal_limits_reach_the_turn_as_text_tokens_and_speech_units():
    options = goal_to_turn_options(Converse.Goal(max_new_tokens=40, max_new_units=250))
    assert (options.max_new_tokens, options.max_new_units) == (40, 250)


def test_every_interface_field_is_documented():
    undocumented = []
    for path in sorted([*ROOT.glob("msg/*.msg"), *ROOT.glob("action/*.action")]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0].strip()
            if code and code != "---" and "#" not in line:
                undocumented.append(f"{path.name}:{number}: {code}")
    assert not undocumented, "fields without a comment:\n" + "\n".join(undocumented)


def test_constants_match_documented_labels():
    labels = re.findall(r"^uint8 (\w+) = (\d+)", (ROOT / "msg/NodeState.msg").read_text(), re.M)
    assert [(n, int(v)) for n, v in labels] == [(n, getattr(NodeState, n)) for n, _ in labels]
    assert AudioChunk.ENCODING_S16LE == "S16LE" and AudioChunk.ENCODING_F32LE == "F32LE"


def wait_for(predicate, timeout_s: float, node) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not predicate():
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


def test_each_message_round_trips_through_another_process():
    sent = samples()
    peer = subprocess.Popen([sys.executable, str(PEER), *sent], stdout=subprocess.PIPE,
                            text=True, env=os.environ.copy())
    rclpy.init()
    node = rclpy.create_node("roundtrip_test")
    try:
        assert peer.stdout.readline().strip() == "ready"
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        received: dict[str, object] = {}
        keep = []
        for spec, msg in sent.items():
            name = spec.split(":")[1].replace(".", "_")
            keep.append(node.create_subscription(
                type(msg), f"roundtrip/{name}/echo",
                lambda m, spec=spec: received.setdefault(spec, m), qos))
            node.create_publisher(type(msg), f"roundtrip/{name}", qos).publish(msg)
        assert wait_for(lambda: len(received) == len(sent), 120.0, node), \
            f"no echo for {sorted(set(sent) - set(received))}"
        for spec, msg in sent.items():
            assert received[spec] == msg, spec
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        peer.terminate()
        peer.wait(timeout=120)


@pytest.mark.parametrize("name", ["wav_source_node", "audio_sink_node"])
def test_executables_are_installed_where_ros2_run_finds_them(name):
    from stream_omni_ros.nodes.executables import executable_path

    path = executable_path(name)
    assert path.parent.name == "stream_omni_ros" and path.parent.parent.name == "lib"
    assert os.access(path, os.X_OK)
