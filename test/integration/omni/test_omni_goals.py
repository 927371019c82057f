"""Every accepted `~/converse` goal ends with a result, whatever the lifecycle or goals do."""
from __future__ import annotations

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.action import ActionClient
from rclpy.qos import QoSProfile, ReliabilityPolicy

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import NodeState

# A first goal long enough that whatever the test does next lands while it runs.
LONG_TURN = {"generation.max_new_tokens": 400, "generation.max_new_units": 2000,
             "generation.ignore_stop_ids": True}


# rclpy's default service QoS keeps the last 10 replies: a client that sends more requests at
# once than its reply queue holds loses replies on its own side before it reads them.
BURST_QOS = QoSProfile(depth=64, reliability=ReliabilityPolicy.RELIABLE)


def converse_client(peer, helpers) -> ActionClient:
    client = ActionClient(peer.node, Converse, "/omni_node/converse",
                          goal_service_qos_profile=BURST_QOS,
                          result_service_qos_profile=BURST_QOS,
                          cancel_service_qos_profile=BURST_QOS)
    helpers.wait_for_action(peer, client)
    return client


def send(client, helpers, goal: Converse.Goal, feedback: list | None = None):
    sent = client.send_goal_async(goal, feedback_callback=None if feedback is None
                                  else feedback.append)
    helpers.wait_until(sent.done, 30, "goal acceptance")
    return sent.result()


def short_goal(text: str) -> Converse.Goal:
    return Converse.Goal(text=text, speak=False, max_new_tokens=3)


def change_state_async(peer, helpers, transition_id: int):
    client = peer.node.create_client(ChangeState, "/omni_node/change_state")
    assert client.wait_for_service(timeout_sec=helpers.DEADLINE_S)
    helpers.wait_discovered(peer)
    return client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))


def wait_for_all(futures: list, helpers, what: str) -> None:
    """Wait until every future is done; fail saying how many never were."""
    try:
        helpers.wait_until(lambda: all(f.done() for f in futures), 60, f"every {what}")
    except AssertionError:
        missing = sum(not f.done() for f in futures)
        raise AssertionError(f"{missing} of {len(futures)} {what}s never answered") from None


def latest_values(diagnostics: list) -> dict[str, str]:
    return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics else {}


def test_deactivate_during_a_goal_ends_it_with_a_result(start_omni, peer, helpers):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    start_omni(**LONG_TURN)
    client = converse_client(peer, helpers)
    feedback: list = []
    handle = send(client, helpers, Converse.Goal(text="Tell me a long story."), feedback)
    helpers.wait_until(lambda: len(feedback) >= 3, 60, "feedback")
    result = handle.get_result_async()
    deactivated = change_state_async(peer, helpers, Transition.TRANSITION_DEACTIVATE)
    helpers.wait_until(result.done, 30, "the result of the goal cut by deactivate")
    assert result.result().status == GoalStatus.STATUS_ABORTED
    assert result.result().result.stop_reason == "cancelled"
    assert "deactivated" in result.result().result.error
    helpers.wait_until(deactivated.done, 30, "deactivate")
    assert deactivated.result().success

    helpers.wait_until(lambda: latest_values(diagnostics).get("lifecycle_state") == "inactive",
                       15, "diagnostics inactive")
    helpers.wait_until(lambda: states[-1].label == "idle" and not states[-1].listening, 10,
                       "state idle")
    values = latest_values(diagnostics)
    assert values["conversation_state"] == "idle", values  # not "listening" while inactive
    refused = send(client, helpers, Converse.Goal(text="Still there?", speak=False))
    assert not refused.accepted  # refused while inactive, with a reason in the log
    helpers.wait_until(lambda: latest_values(diagnostics).get("converse.rejected.inactive")
                       == "1", 15, "the refusal counted")

    cleaned = change_state_async(peer, helpers, Transition.TRANSITION_CLEANUP)
    helpers.wait_until(cleaned.done, 30, "cleanup")
    assert cleaned.result().success


def test_cancelling_one_goal_leaves_the_other_goals_alone(start_omni, peer, helpers):
    start_omni(**LONG_TURN)
    client = converse_client(peer, helpers)
    feedback: list = []
    running = send(client, helpers, Converse.Goal(text="Tell me a long story."), feedback)
    helpers.wait_until(lambda: len(feedback) >= 3, 60, "feedback of the running goal")
    queued = [send(client, helpers, short_goal(text)) for text in ("One?", "Two?", "Three?")]
    assert running.accepted and all(goal.accepted for goal in queued)
    results = [goal.get_result_async() for goal in [running, *queued]]

    helpers.wait_until(queued[1].cancel_goal_async().done, 30, "cancel of a queued goal")
    helpers.wait_until(results[2].done, 30, "the cancelled queued goal's result")
    assert not results[0].done(), "cancelling a queued goal ended the running one"
    helpers.wait_until(running.cancel_goal_async().done, 30, "cancel of the running goal")
    for reply in results:
        helpers.wait_until(reply.done, 60, "every result")
    statuses = [reply.result().status for reply in results]
    assert statuses == [GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_SUCCEEDED,
                        GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_SUCCEEDED], \
        [reply.result().result for reply in results]
    stops = [reply.result().result.stop_reason for reply in results]
    assert stops == ["cancelled", "max_tokens", "cancelled", "max_tokens"]


def test_a_burst_of_goals_is_answered_every_one(peer, helpers, tmp_path):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    omni = helpers.OmniProcess({"responder": "echo"}, tmp_path / "omni_echo.log")
    try:
        client = converse_client(peer, helpers)
        sent = [client.send_goal_async(Converse.Goal(text=f"Question {n}?", speak=False))
                for n in range(20)]
        wait_for_all(sent, helpers, "goal request")
        accepted = [s.result() for s in sent if s.result().accepted]
        results = [handle.get_result_async() for handle in accepted]
        wait_for_all(results, helpers, "result")
        assert {r.result().status for r in results} == {GoalStatus.STATUS_SUCCEEDED}
        replies = sorted(r.result().result.response for r in results)
        assert len(set(replies)) == len(results)  # each answered its own question
        refused = len(sent) - len(accepted)
        helpers.wait_until(lambda: int(latest_values(diagnostics).get(
            "converse.rejected.queue_full", "0")) == refused, 15, "refusals counted")
    finally:
        omni.stop()
        print(f"---- omni_echo.log ----\n{omni.log()}")
