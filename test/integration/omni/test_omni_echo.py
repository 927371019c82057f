"""omni_node with `responder:=echo`: the whole node graph answers without any model files."""
from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.duration import Duration

from stream_omni_ros.action import Converse
from stream_omni_ros.bench.echo import speech_like
from stream_omni_ros.engine.simulated_room import SimulatedRoom
from stream_omni_ros.msg import AudioChunk, ResponseText
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg

ROOM_S = 4.0  # of the robot speaking into a simulated room


@pytest.fixture
def echo_omni(tmp_path, helpers):
    """omni_node with the echo responder and no model.path or cosyvoice.path at all."""
    omni = helpers.OmniProcess({"responder": "echo"}, tmp_path / "omni_echo.log")
    yield omni
    omni.stop()
    print(f"---- omni_echo.log ----\n{omni.log()}")  # shown when a test fails


def test_echo_node_answers_a_text_goal_and_publishes_the_final_response(echo_omni, peer,
                                                                         helpers):
    finals = peer.collect(ResponseText, "response/final")
    audio_out = peer.collect(AudioChunk, "audio/out")
    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    sent = client.send_goal_async(Converse.Goal(text="Bring me the red cup"))
    helpers.wait_until(sent.done, what="goal acceptance")
    reply = sent.result().get_result_async()
    helpers.wait_until(reply.done, what="the result")
    status, result = reply.result().status, reply.result().result
    assert status == GoalStatus.STATUS_SUCCEEDED, result.error
    assert result.response.startswith("You said: Bring me the red cup")
    helpers.wait_until(lambda: finals, what="response/final")
    assert finals[-1].is_final and finals[-1].text == result.response
    assert finals[-1].turn_id == result.turn_id
    # spoken by default: the echo tones reach audio/out, ending with a final chunk
    helpers.wait_until(lambda: audio_out and audio_out[-1].is_final, what="final audio/out")
    assert result.audio_duration_s > 0

    assert echo_omni.stop() == 0
    assert "model released: True" in echo_omni.log()


def diagnostic_values(arrays: list) -> dict[str, str]:
    """Key -> value of the newest omni_node status (empty before the first)."""
    return {kv.key: kv.value for kv in arrays[-1].status[0].values} if arrays else {}


def test_diagnostics_report_the_echo_cancellation(tmp_path, peer, helpers):
    pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")
    arrays = peer.collect(DiagnosticArray, "/diagnostics")
    omni = helpers.OmniProcess({"responder": "echo", "diagnostics_period_s": 0.2},
                               tmp_path / "omni_echo_diagnostics.log")
    try:
        helpers.wait_until(lambda: "echo.frames" in diagnostic_values(arrays),
                           what="echo values in /diagnostics")
        before = diagnostic_values(arrays)
        assert (before["echo.reference_live"], before["echo.frames"],
                before["echo.erle_db"]) == ("False", "0", "n/a")
        steps = play_into_a_room(peer, helpers, arrays)
        # audio.accepted is counted once the engine has cancelled the chunk: the report that
        # counts the last one holds the figures of all
        values = diagnostic_values(arrays)
        print(f"/diagnostics: echo.erle_db {values['echo.erle_db']} over "
              f"{values['echo.frames']} frames of the robot speaking in {steps}")
        assert values["echo.reference_live"] == "True"
        assert 0 < int(values["echo.frames"]) <= steps
        assert float(values["echo.erle_db"]) >= 10.0
    finally:
        assert omni.stop() == 0, omni.log()


def play_into_a_room(peer, helpers, arrays: list) -> int:
    """The robot's voice on audio/played, then its echo on audio/in; returns the chunks.

    The played audio is all in before the microphone audio it cancels (a player stamps ahead
    by its output latency); the first microphone chunk comes first, to set the stamps' clock.
    """
    mic = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    played = peer.node.create_publisher(AudioChunk, "audio/played", helpers.RELIABLE)
    helpers.wait_heard(peer, mic, played)
    room, start = SimulatedRoom(), peer.node.get_clock().now()
    steps = [room.step(160)]  # silence before the robot speaks
    room.speak(speech_like(ROOM_S))
    steps += [room.step(160) for _ in range(int(ROOM_S * 100))]
    stamps = [(start + Duration(nanoseconds=k * 10_000_000)).to_msg() for k in range(len(steps))]

    def count(key: str) -> int:
        return int(diagnostic_values(arrays).get(key, 0))
    mic.publish(pcm_to_audio_msg(steps[0][0], 16000, stamp=stamps[0], seq=0))
    helpers.wait_until(lambda: count("audio.accepted") == 1, what="the first microphone chunk")
    for seq in range(1, len(steps)):
        played.publish(pcm_to_audio_msg(steps[seq][1], 16000, stamp=stamps[seq], seq=seq))
    helpers.wait_until(lambda: count("played.accepted") == len(steps) - 1,
                       what="the played audio")
    for seq in range(1, len(steps)):
        mic.publish(pcm_to_audio_msg(steps[seq][0], 16000, stamp=stamps[seq], seq=seq))
    helpers.wait_until(lambda: count("audio.accepted") == len(steps),
                       what="the microphone audio")
    return len(steps) - 1
