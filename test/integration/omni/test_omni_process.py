"""omni_node as a process: stop signals in any number and order, and missing Python modules."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from stream_omni_ros.msg import NodeState
from stream_omni_ros.nodes.executables import start_node

ECHO = {"responder": "echo"}  # no model to load: the process side is what is tested here


def start_echo_omni(tmp_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """omni_node with the echo responder; its log goes to tmp_path/omni.log."""
    log = open(tmp_path / "omni.log", "w", encoding="utf-8")
    return start_node("omni_node", ECHO, stdout=log, stderr=subprocess.STDOUT,
                      env=env or dict(os.environ))


def hide_module(tmp_path: Path, module: str) -> dict[str, str]:
    """An environment in which `import module` fails as if it were not installed."""
    blocker = tmp_path / "hidden_modules"
    blocker.mkdir(exist_ok=True)
    (blocker / f"{module}.py").write_text(
        f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n")
    return {**os.environ, "PYTHONPATH": f"{blocker}:{os.environ.get('PYTHONPATH', '')}"}


def test_sigint_twice_then_sigterm_during_teardown_exit_0_without_a_traceback(
        tmp_path, peer, helpers):
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = start_echo_omni(tmp_path)
    try:
        helpers.wait_until(lambda: any(s.label == "listening" for s in states)
                           or omni.poll() is not None, 60, "omni_node to listen")
        assert omni.poll() is None, (tmp_path / "omni.log").read_text()
        # Non-interactive `ros2 launch` forwards SIGINT to a node that already got the
        # terminal's; a SIGTERM may follow while the node tears down.
        for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
            omni.send_signal(signum)
        status = omni.wait(timeout=120)
    finally:
        if omni.poll() is None:
            omni.kill()
            omni.wait()
    log = (tmp_path / "omni.log").read_text()
    assert status == 0, log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log


@pytest.mark.parametrize("module", ["soxr", "silero_vad"])
def test_a_missing_module_fails_configure_naming_it_and_its_install(tmp_path, peer, helpers,
                                                                    module):
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = start_echo_omni(tmp_path, hide_module(tmp_path, module))
    try:
        helpers.wait_until(lambda: any("configure failed" in s.detail for s in states)
                           or omni.poll() is not None, 60, "the configure failure")
        alive = omni.poll() is None
    finally:
        omni.send_signal(signal.SIGINT)
        status = omni.wait(timeout=120)
    log = (tmp_path / "omni.log").read_text()
    assert alive, log  # the node serves on (lifecycle services, diagnostics), unconfigured
    detail = next(s.detail for s in states if "configure failed" in s.detail)
    assert f"'{module}'" in detail and "pip install" in detail, detail
    assert f"configure failed: MissingModuleError: Python module '{module}' is not installed" \
        in log, log
    assert status == 0, log


def test_a_signal_after_the_teardown_is_harmless(tmp_path, peer, helpers):
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = start_echo_omni(tmp_path)
    log_path = tmp_path / "omni.log"
    try:
        helpers.wait_until(lambda: any(s.label == "listening" for s in states)
                           or omni.poll() is not None, 60, "omni_node to listen")
        omni.send_signal(signal.SIGINT)
        # `ros2 launch` forwards its own SIGINT a little later: here, once the model is freed.
        helpers.wait_until(lambda: "model released" in log_path.read_text()
                           or omni.poll() is not None, 30, "the teardown")
        omni.send_signal(signal.SIGINT)
        omni.send_signal(signal.SIGTERM)
        status = omni.wait(timeout=120)
    finally:
        if omni.poll() is None:
            omni.kill()
            omni.wait()
    assert status == 0, log_path.read_text()


def test_without_a_gpu_the_shipped_cuda_device_degrades_to_cpu_with_one_warning(
        start_omni, peer, helpers):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: nothing degrades")
    states = peer.collect(NodeState, "state", helpers.LATCHED)
    omni = start_omni(device="cuda")  # as config/stream_omni.yaml sets it
    helpers.wait_until(lambda: any(s.label == "listening" for s in states)
                       or any("configure failed" in s.detail for s in states)
                       or omni.process.poll() is not None, 120, "configure")
    log = omni.log()
    assert any(s.label == "listening" for s in states), log
    assert log.count("no CUDA GPU is usable") == 1 and "running on cpu" in log, log
    assert "loaded on cpu" in log and "loaded on cuda" not in log, log
    assert "images decoded by rosbags-image (cv_bridge is not importable)" in log or \
        "images decoded by cv_bridge" in log, log
    assert omni.stop() == 0, log
