"""omni_node in its own process on the tiny random Stream-Omni + CosyVoice; the test is a peer.

The checkpoint folders are written in their on-disk formats into tmp_path and loaded by the
node's real loader. The words the tiny model says are meaningless, but every path runs.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.nodes import discovery
from stream_omni_ros.nodes.executables import start_node, stop_node
from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice

RELIABLE = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


@pytest.fixture(scope="package")
def tiny_models(tmp_path_factory) -> dict[str, object]:
    """Node parameters that load the tiny checkpoint and tiny CosyVoice folder quickly."""
    root = tmp_path_factory.mktemp("omni_models")
    model = write_tiny_checkpoint(root / "stream_omni")
    cosyvoice = write_tiny_cosyvoice(root / "cosyvoice")
    write_tiny_speech_tokenizer(cosyvoice)
    return {"model.path": str(model), "cosyvoice.path": str(cosyvoice), "dtype": "fp32",
            "cosyvoice.n_timesteps": 2, "generation.max_new_tokens": 24,
            "generation.max_new_units": 60, "generation.mask_units": True}


class OmniProcess:
    """The node's process and its log (stdout + stderr)."""

    def __init__(self, params: dict[str, object], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w", encoding="utf-8")
        self.process = start_node("omni_node", params, stdout=self._log,
                                  stderr=subprocess.STDOUT)

    def log(self) -> str:
        """Everything the node printed so far."""
        return self.log_path.read_text(encoding="utf-8")

    def stop(self) -> int:
        """SIGINT, as Ctrl-C would; returns the exit status."""
        status = stop_node(self.process)
        self._log.close()
        return status


@pytest.fixture
def start_omni(tmp_path, tiny_models):
    """start_omni(**params) -> OmniProcess (tiny models); every one is stopped after the test."""
    started: list[OmniProcess] = []

    def start(**params: object) -> OmniProcess:
        omni = OmniProcess({**tiny_models, **params}, tmp_path / f"omni_{len(started)}.log")
        started.append(omni)
        return omni

    yield start
    for omni in started:
        omni.stop()
        print(f"---- {omni.log_path.name} ----\n{omni.log()}")  # shown when a test fails


class Peer:
    """A test-side node spun by a background executor, with message collectors."""

    def __init__(self) -> None:
        rclpy.init()
        self.node = rclpy.create_node("omni_test_peer")
        self.executor = MultiThreadedExecutor(num_threads=4)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def collect(self, msg_type: type, topic: str, qos: QoSProfile = RELIABLE) -> list:
        """A list that fills with the messages arriving on `topic`."""
        received: list = []
        self.node.create_subscription(msg_type, topic, received.append, qos)
        return received

    def close(self) -> None:
        """Stop spinning and shut rclpy down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown()


# How long a test waits for anything (a node starting, a reply, a count) before it fails. Tests
# wait on conditions; only a hang takes this long, however busy the machine is.
DEADLINE_S = 120.0


def wait_until(predicate, timeout_s: float = DEADLINE_S, what: str = "condition") -> None:
    """Poll `predicate()` until it holds; fail with `what` after the timeout.

    A `timeout_s` below DEADLINE_S (what the wait takes on an idle machine) is raised to it.
    """
    deadline = time.monotonic() + max(timeout_s, DEADLINE_S)
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_discovered(peer: Peer, node: str = "/omni_node") -> None:
    """Wait until `node` has discovered every endpoint the peer created (architecture.md 5.1)."""
    assert discovery.wait_discovered(peer.node, node, DEADLINE_S), f"{node} never discovered us"


def wait_heard(peer: Peer, *publishers) -> None:
    """Wait until omni_node subscribes to each publisher's topic and hears the peer on it."""
    wait_until(lambda: all(p.get_subscription_count() for p in publishers),
               what=", ".join(p.topic_name for p in publishers) + " subscribed")
    wait_discovered(peer)


def wait_for_action(peer: Peer, client) -> None:
    """Wait until omni_node offers the action and has discovered the peer's action client."""
    assert client.wait_for_server(timeout_sec=DEADLINE_S), "the action is not offered"
    wait_discovered(peer)


def call_service(peer: Peer, srv_type: type, name: str, request):
    """Call service `name` from the peer and wait for its response."""
    client = peer.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=DEADLINE_S), f"{name} not offered"
    wait_discovered(peer, name.rsplit("/", 1)[0] or "/")
    future = client.call_async(request)
    wait_until(future.done, what=name)
    return future.result()


def change_state(peer: Peer, transition_id: int) -> bool:
    """Ask omni_node for a lifecycle transition; whether it succeeded."""
    request = ChangeState.Request(transition=Transition(id=transition_id))
    return call_service(peer, ChangeState, "/omni_node/change_state", request).success


def lifecycle_label(peer: Peer) -> str:
    """omni_node's lifecycle state label, as its get_state service reports it."""
    return call_service(peer, GetState, "/omni_node/get_state",
                        GetState.Request()).current_state.label


@pytest.fixture
def peer():
    """The test's own ROS node (the node under test runs in another process)."""
    test_peer = Peer()
    yield test_peer
    test_peer.close()


@pytest.fixture
def speak(tmp_path):
    """speak(text) -> 16 kHz mono float32 espeak-ng speech with 1 s of silence after it."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise test speech")

    def synthesise(text: str) -> np.ndarray:
        wav = tmp_path / "speech.wav"
        tts = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True)
        subprocess.run(["sox", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", str(wav),
                        "pad", "0.3", "1.2"], input=tts.stdout, check=True, capture_output=True)
        samples, rate = soundfile.read(wav, dtype="float32")
        assert rate == 16000
        return samples
    return synthesise


@pytest.fixture
def helpers():
    """This module's helpers (test files cannot import a conftest)."""
    return sys.modules[__name__]
