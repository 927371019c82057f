"""omni_node with `responder:=echo`: the whole node graph answers without any model files."""
from __future__ import annotations

import pytest
from action_msgs.msg import GoalStatus
from rclpy.action import ActionClient

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk, ResponseText


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
