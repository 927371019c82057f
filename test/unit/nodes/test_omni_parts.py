"""omni_node parts on a real rclpy node: they read and change only the engine."""
from __future__ import annotations

import ast
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from std_srvs.srv import SetBool

import stream_omni_ros.nodes
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (TranscriptFinal, TurnFinished, TurnMetrics,
                                           TurnStarted)
from stream_omni_ros.msg import ResponseText, Transcript
from stream_omni_ros.nodes.omni_config import AudioOutputConfig
from stream_omni_ros.engine.echo import EchoReport
from stream_omni_ros.nodes.omni_diagnostics import (InputCounters, NodeSnapshot,
                                                    snapshot_to_diagnostics)
from stream_omni_ros.nodes.omni_publishers import RELIABLE_10, EventPublisher
from stream_omni_ros.nodes.omni_services import ConversationServices

NO_METRICS = TurnMetrics(None, None, None, 0, None, 0.0, None)


@pytest.fixture
def spun_node():
    """A real rclpy node spun by a background executor, in a context of its own."""
    context = rclpy.Context()
    context.init()
    node = Node("omni_parts_test", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    context.try_shutdown()


@pytest.fixture
def engine():
    """An echo engine (real silero VAD), stopped after the test."""
    made = ConversationEngine(EchoResponder(), EngineConfig())
    yield made
    made.stop()


def wait_until(predicate, what: str, timeout_s: float = 60.0) -> None:
    """Poll a condition; fail with `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_set_listening_service_changes_the_engine_state(spun_node, engine):
    services = ConversationServices(spun_node, engine, InputCounters())
    client = spun_node.create_client(SetBool, "~/set_listening")
    assert client.wait_for_service(timeout_sec=60)
    try:
        assert engine.listening and engine.state == "listening"
        reply = client.call_async(SetBool.Request(data=False))
        wait_until(reply.done, "the set_listening reply")
        assert reply.result().success
        assert not engine.listening and engine.state == "idle"
        reply = client.call_async(SetBool.Request(data=True))
        wait_until(reply.done, "the second set_listening reply")
        assert engine.listening and engine.state == "listening"
    finally:
        services.destroy()


def test_publisher_names_the_frames_carried_by_the_events(spun_node):
    finals, transcripts = [], []
    spun_node.create_subscription(ResponseText, "response/final", finals.append, RELIABLE_10)
    spun_node.create_subscription(Transcript, "asr/final", transcripts.append, RELIABLE_10)
    publisher = EventPublisher(spun_node, AudioOutputConfig())
    wait_until(lambda: spun_node.count_subscribers("response/final") and
               spun_node.count_subscribers("asr/final"), "the subscriptions")
    publisher.publish(TurnStarted(1, "speech", 1000.0))
    publisher.publish(TranscriptFinal(1, "hello", 1000.0, 1001.0, audio_frame_id="mic_a"))
    publisher.publish(TurnFinished(1, "hello", "hi", "text_eos", NO_METRICS, 1000.4,
                                   image_frame_id="camera_a"))
    wait_until(lambda: finals and transcripts, "response/final and asr/final")
    assert transcripts[0].header.frame_id == "mic_a"
    assert finals[0].used_image and finals[0].image_frame_id == "camera_a"
    publisher.destroy()


def imported_modules(source: Path) -> set[str]:
    """Every module an `import` statement in `source` names, at any depth (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_module_of_nodes_imports_torch():
    folder = Path(stream_omni_ros.nodes.__file__).parent
    modules = {path.stem: path for path in folder.glob("*.py")}
    assert {"omni_node", "omni_inputs", "omni_publishers", "omni_services",
            "omni_diagnostics", "omni_action", "audio_player_node"} <= set(modules)
    uses = {name: sorted(m for m in imported_modules(path) if m.split(".")[0] == "torch")
            for name, path in modules.items()}
    assert {name: found for name, found in uses.items() if found} == {}


def test_the_import_scan_finds_a_lazy_torch_import(tmp_path):
    module = tmp_path / "lazy.py"
    module.write_text("def f():\n    import torch.cuda\n    return np\nimport numpy as np\n")
    assert imported_modules(module) == {"torch.cuda", "numpy"}


def test_diagnostics_show_the_echo_canceller_figures():
    def values(echo: EchoReport | None) -> dict[str, str]:
        snapshot = NodeSnapshot("active", True, "cpu", "listening", 0, 0, {}, {}, None, "",
                                echo)
        status = snapshot_to_diagnostics(snapshot, "/omni_node").status[0]
        return {kv.key: kv.value for kv in status.values if kv.key.startswith("echo.")}
    assert values(None) == {}
    assert values(EchoReport(True, 250, 23.456, "")) == {
        "echo.reference_live": "True", "echo.frames": "250", "echo.erle_db": "23.5"}
    assert values(EchoReport(False, 0, None, "no module named livekit")) == {
        "echo.reference_live": "False", "echo.frames": "0", "echo.erle_db": "n/a",
        "echo.unavailable": "no module named livekit"}
