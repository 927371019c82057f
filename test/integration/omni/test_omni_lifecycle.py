"""Lifecycle: configure loads, activate serves, deactivate stops listening, cleanup frees."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from rclpy.action import ActionClient

from stream_omni_ros.action import Converse
from stream_omni_ros.msg import AudioChunk, NodeState


def diagnostics_values(array: DiagnosticArray) -> dict[str, str]:
    return {kv.key: kv.value for kv in array.status[0].values}


def latest_diagnostics(diagnostics: list, helpers, **expected: str) -> dict[str, str]:
    """Wait for a diagnostics message whose values include `expected`."""
    def matches() -> bool:
        values = diagnostics_values(diagnostics[-1]) if diagnostics else {}
        return all(values.get(k) == v for k, v in expected.items())
    helpers.wait_until(matches, what=f"diagnostics with {expected}")
    return diagnostics_values(diagnostics[-1])


def test_configure_activate_deactivate_cleanup(start_omni, peer, helpers):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = start_omni(autostart=False)
    assert helpers.lifecycle_label(peer) == "unconfigured"
    latest_diagnostics(diagnostics, helpers, model_loaded="False")

    assert helpers.change_state(peer, Transition.TRANSITION_CONFIGURE)
    latest_diagnostics(diagnostics, helpers, model_loaded="True", lifecycle_state="inactive")
    converse = ActionClient(peer.node, Converse, "/omni_node/converse")
    assert not converse.wait_for_server(timeout_sec=1.0), "action served while inactive"

    assert helpers.change_state(peer, Transition.TRANSITION_ACTIVATE)
    assert converse.wait_for_server(timeout_sec=helpers.DEADLINE_S)
    audio = peer.node.create_publisher(AudioChunk, "audio/in", helpers.RELIABLE)
    helpers.wait_until(lambda: audio.get_subscription_count() == 1, what="audio/in subscribed")
    helpers.wait_until(lambda: states and states[-1].listening, what="listening")

    assert helpers.change_state(peer, Transition.TRANSITION_DEACTIVATE)
    helpers.wait_until(lambda: audio.get_subscription_count() == 0, what="audio/in released")
    helpers.wait_until(lambda: not states[-1].listening and states[-1].label == "idle",
                       what="state idle")

    assert helpers.change_state(peer, Transition.TRANSITION_CLEANUP)
    values = latest_diagnostics(diagnostics, helpers, model_loaded="False",
                                lifecycle_state="unconfigured")
    assert values["conversation_state"] == "unloaded"
    helpers.wait_until(lambda: "model released: True" in omni.log(), what="model freed log")
    assert helpers.lifecycle_label(peer) == "unconfigured"


def test_missing_checkpoint_fails_configure_but_the_node_stays(start_omni, peer, helpers,
                                                              tmp_path):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    missing = tmp_path / "no_such_checkpoint"
    omni = start_omni(**{"model.path": str(missing)})
    helpers.wait_until(lambda: "configure failed" in omni.log(), what="the configure error")
    assert str(missing) in omni.log()
    values = latest_diagnostics(diagnostics, helpers, model_loaded="False")
    assert str(missing) in values["last_error"]
    assert diagnostics[-1].status[0].level == b"\x02"  # ERROR
    assert omni.process.poll() is None and helpers.lifecycle_label(peer) == "unconfigured"
