"""Configure fails loudly for every kind of fault and can be retried with corrected parameters."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import Transition
from rcl_interfaces.srv import SetParameters
from rclpy.action import ActionClient
from rclpy.parameter import Parameter

from stream_omni_ros.action import Converse


def set_parameter(peer, helpers, name: str, value: str):
    request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    reply = helpers.call_service(peer, SetParameters, "/omni_node/set_parameters", request)
    return reply.results[0]


def diagnostics_matching(diagnostics: list, helpers, **expected: str) -> DiagnosticStatus:
    """The newest /diagnostics status once its values include `expected`."""
    def values() -> dict[str, str]:
        return {kv.key: kv.value for kv in diagnostics[-1].status[0].values} if diagnostics \
            else {}
    helpers.wait_until(lambda: all(values().get(k) == v for k, v in expected.items()), 15,
                       f"diagnostics with {expected}")
    return diagnostics[-1].status[0]


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def broken_copy(good: str, folder: Path, breaks: str) -> Path:
    """A copy of the tiny checkpoint with one realistic fault; `breaks` names which."""
    shutil.copytree(good, folder)
    if breaks == "truncated_weights":
        weights = sorted(folder.glob("*.safetensors"))[0]
        data = weights.read_bytes()
        weights.write_bytes(data[:len(data) // 2])
    elif breaks == "config_is_a_list":
        (folder / "config.json").write_text("[1, 2]", encoding="utf-8")
    elif breaks == "garbage_tokenizer":
        (folder / "tokenizer.json").write_text("not a tokenizer {", encoding="utf-8")
    elif breaks == "config_has_wrong_types":
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config["hidden_size"] = "large"
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_configure_failures_of_any_kind_are_logged_reported_and_retryable(
        start_omni, peer, helpers, tiny_models, tmp_path):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    broken = broken_copy(tiny_models["model.path"], tmp_path / "truncated", "truncated_weights")
    omni = start_omni(**{"model.path": str(broken)})  # autostart: configure runs at once
    status = diagnostics_matching(diagnostics, helpers, lifecycle_state="unconfigured",
                                  **{"lifecycle.failed.configure": "1"})
    values = values_of(status)
    assert values["last_error"].startswith("configure failed: ")
    assert status.level == DiagnosticStatus.ERROR and status.message == values["last_error"]
    assert values["model_loaded"] == "False"
    assert "Traceback (most recent call last)" in omni.log()
    assert values["last_error"].split(": ", 1)[1] in omni.log()
    assert helpers.lifecycle_label(peer) == "unconfigured"

    assert not helpers.change_state(peer, Transition.TRANSITION_CONFIGURE)  # retryable
    diagnostics_matching(diagnostics, helpers, lifecycle_state="unconfigured",
                         **{"lifecycle.failed.configure": "2"})
    assert omni.process.poll() is None


def test_a_wrong_model_path_is_fixed_without_a_restart(start_omni, peer, helpers, tiny_models,
                                                        tmp_path):
    diagnostics = peer.collect(DiagnosticArray, "/diagnostics")
    good = tiny_models["model.path"]
    as_list = broken_copy(good, tmp_path / "as_list", "config_is_a_list")
    omni = start_omni(autostart=False, **{"model.path": str(as_list)})
    assert not helpers.change_state(peer, Transition.TRANSITION_CONFIGURE)
    first = values_of(diagnostics_matching(diagnostics, helpers, lifecycle_state="unconfigured",
                                           **{"lifecycle.failed.configure": "1"}))["last_error"]
    assert first.startswith("configure failed: ")

    for count, breaks in enumerate(("garbage_tokenizer", "config_has_wrong_types"), start=2):
        broken = broken_copy(good, tmp_path / breaks, breaks)
        assert set_parameter(peer, helpers, "model.path", str(broken)).successful
        assert not helpers.change_state(peer, Transition.TRANSITION_CONFIGURE)
        # the failure is counted before the transition has returned to unconfigured: wait for
        # both, a report between them is no failure
        failed = values_of(diagnostics_matching(diagnostics, helpers,
                                                lifecycle_state="unconfigured",
                                                **{"lifecycle.failed.configure": str(count)}))
        assert failed["last_error"].startswith("configure failed: ")
        assert f"model.path {str(broken)!r}" in omni.log()  # configure read the new path

    assert set_parameter(peer, helpers, "model.path", good).successful
    assert helpers.change_state(peer, Transition.TRANSITION_CONFIGURE)
    loaded = values_of(diagnostics_matching(diagnostics, helpers, lifecycle_state="inactive",
                                            model_loaded="True"))
    assert loaded["last_error"] == ""
    refused = set_parameter(peer, helpers, "model.path", str(as_list))  # configured: refused
    assert not refused.successful and "unconfigured" in refused.reason
    assert helpers.change_state(peer, Transition.TRANSITION_ACTIVATE)
    client = ActionClient(peer.node, Converse, "/omni_node/converse")
    helpers.wait_for_action(peer, client)
    sent = client.send_goal_async(Converse.Goal(text="Are you there?", speak=False))
    helpers.wait_until(sent.done, 30, "goal acceptance")
    reply = sent.result().get_result_async()
    helpers.wait_until(reply.done, 60, "the result")
    assert reply.result().status == GoalStatus.STATUS_SUCCEEDED, reply.result().result.error
