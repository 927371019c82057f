"""The `~/converse` action (feedback, cancel mid-turn) and the three services."""
from __future__ import annotations

import time

from action_msgs.msg import GoalStatus
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.parameter import Parameter
from rclpy.time import Time
from rosgraph_msgs.msg import Clock
from std_srvs.srv import SetBool, Trigger

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText

# Turns long enough that a cancel lands mid-turn, whatever the random weights would say.
LONG_TURN = {"generation.max_new_tokens": 400, "generation.max_new_units": 2000,
             "generation.ignore_stop_ids": True}


def wait_future(future, helpers, what: str = "a reply"):
    helpers.wait_until(future.done, what=what)
    return future.result()


def converse(peer, helpers, goal: Converse.Goal, feedback: list):
    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    handle = wait_future(client.send_goal_async(goal, feedback_callback=feedback.append),
                         helpers, what="goal acceptance")
    assert handle.accepted
    return handle


def test_text_goal_streams_feedback_and_returns_the_turn(start_omni, peer, helpers):
    finals = peer.collect(ResponseText, "response/final")
    start_omni()
    feedback: list = []
    handle = converse(peer, helpers, Converse.Goal(text="What is in front of you?"), feedback)
    reply = wait_future(handle.get_result_async(), helpers, what="the result")
    result = reply.result
    assert reply.status == GoalStatus.STATUS_SUCCEEDED, result.error
    assert result.transcript == "What is in front of you?"
    assert result.response and result.stop_reason in ("eos", "max_tokens", "max_units")
    assert result.text_tokens > 0 and result.endpoint_to_first_token_s >= 0
    assert result.audio_duration_s > 0 and result.endpoint_to_first_audio_s >= 0
    steps = [f.feedback for f in feedback]
    assert {f.turn_id for f in steps} == {result.turn_id}
    assert "".join(f.response_delta for f in steps) == result.response
    assert steps[-1].response == result.response and steps[-1].audio_seconds > 0
    helpers.wait_until(lambda: finals, what="response/final")
    assert finals[-1].turn_id == result.turn_id and finals[-1].text == result.response


def test_cancel_mid_turn_stops_text_and_speech(start_omni, peer, helpers):
    finals = peer.collect(ResponseText, "response/final")
    audio = peer.collect(AudioChunk, "audio/out")
    start_omni(**LONG_TURN)
    feedback: list = []
    handle = converse(peer, helpers, Converse.Goal(text="Tell me a long story."), feedback)
    helpers.wait_until(lambda: len(feedback) >= 3, what="feedback")
    wait_future(handle.cancel_goal_async(), helpers, what="cancel acceptance")
    reply = wait_future(handle.get_result_async(), helpers, what="the cancelled result")
    assert reply.status == GoalStatus.STATUS_CANCELED
    assert reply.result.stop_reason == "cancelled"
    helpers.wait_until(lambda: finals, what="response/final")
    assert finals[-1].stop_reason == "cancelled" and finals[-1].turn_id == reply.result.turn_id
    if audio:  # a sink learns that the cancelled turn's speech ends here
        helpers.wait_until(lambda: audio[-1].is_final, what="the final audio chunk")
    count = len(audio)
    time.sleep(0.5)
    assert len(audio) == count, "speech kept coming after the cancel"


def test_services_reset_listen_and_stop_speaking(start_omni, peer, helpers):
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    finals = peer.collect(ResponseText, "response/final")
    start_omni(**LONG_TURN)
    helpers.wait_until(lambda: states and states[-1].listening, what="listening")

    off = helpers.call_service(peer, SetBool, "/omni_node/set_listening",
                               SetBool.Request(data=False))
    assert off.success
    helpers.wait_until(lambda: not states[-1].listening and states[-1].label == "idle",
                       what="state listening false")
    assert helpers.call_service(peer, SetBool, "/omni_node/set_listening",
                                SetBool.Request(data=True)).success
    helpers.wait_until(lambda: states[-1].listening, what="listening again")

    feedback: list = []
    handle = converse(peer, helpers, Converse.Goal(text="Count to one hundred."), feedback)
    helpers.wait_until(lambda: len(feedback) >= 2, what="feedback")
    stop = helpers.call_service(peer, Trigger, "/omni_node/stop_speaking", Trigger.Request())
    assert stop.success and "stopped" in stop.message
    reply = wait_future(handle.get_result_async(), helpers, what="the stopped turn")
    assert reply.result.stop_reason == "cancelled"
    helpers.wait_until(lambda: finals and finals[-1].stop_reason == "cancelled",
                       what="response/final cancelled")

    reset = helpers.call_service(peer, Trigger, "/omni_node/reset_conversation", Trigger.Request())
    assert reset.success
    nothing = helpers.call_service(peer, Trigger, "/omni_node/stop_speaking", Trigger.Request())
    assert nothing.success and "nothing to stop" in nothing.message


def set_parameter(peer, helpers, name: str, value: str) -> bool:
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    reply = helpers.call_service(peer, SetParameters, "/omni_node/set_parameters", request)
    return reply.results[0].successful


def test_runtime_safe_parameters_change_live_and_the_rest_are_read_only(start_omni, peer,
                                                                        helpers):
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    start_omni()
    helpers.wait_until(lambda: states and states[-1].label == "listening", what="listening")
    assert set_parameter(peer, helpers, "listen.mode", "push_to_talk")
    helpers.wait_until(lambda: states[-1].label == "idle", what="idle in push_to_talk mode")
    assert not set_parameter(peer, helpers, "listen.mode", "sometimes")  # invalid value
    assert not set_parameter(peer, helpers, "device", "cuda")  # needs a reconfigure
    assert set_parameter(peer, helpers, "listen.mode", "always")
    helpers.wait_until(lambda: states[-1].label == "listening", what="listening again")


def test_outputs_are_stamped_by_the_simulation_clock(start_omni, peer, helpers):
    clock = peer.node.create_publisher(Clock, "/clock", 10)
    sim_start = 1000.0
    ticking = peer.node.create_timer(0.01, lambda: clock.publish(Clock(clock=Time(
        nanoseconds=int((sim_start + time.monotonic() - wall_start) * 1e9)).to_msg())))
    wall_start = time.monotonic()
    finals = peer.collect(ResponseText, "response/final")
    start_omni(use_sim_time=True)
    feedback: list = []
    handle = converse(peer, helpers, Converse.Goal(text="What time is it?"), feedback)
    wait_future(handle.get_result_async(), helpers, what="the result")
    helpers.wait_until(lambda: finals, what="response/final")
    stamp = finals[-1].header.stamp.sec + finals[-1].header.stamp.nanosec * 1e-9
    assert sim_start < stamp < sim_start + (time.monotonic() - wall_start) + 1.0
    ticking.cancel()


def test_push_to_talk_outside_its_listen_mode_is_refused(start_omni, peer, helpers):
    start_omni()
    refused = helpers.call_service(peer, SetBool, "/omni_node/push_to_talk",
                                   SetBool.Request(data=True))
    assert not refused.success
    assert refused.message == ("listen.mode is 'always'; ~/push_to_talk needs listen.mode "
                               "push_to_talk")
