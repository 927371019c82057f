"""The launch files run as `ros2 launch` runs them (launch.LaunchService), then Ctrl-C.

Skipped where the `launch` and `launch_ros` packages are missing (they are not on PyPI, so CI
machines without a ROS 2 distro skip this); on a robot or with their sources on PYTHONPATH it runs
the package's launch files for real, with the shipped YAML and the echo responder.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("launch", reason="the launch package is not installed (robots have it)")
pytest.importorskip("launch_ros", reason="launch_ros is not installed (robots have it)")

from ament_index_python.packages import get_package_share_directory  # noqa: E402

RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
mode, path, *args = sys.argv[1:]
service = LaunchService(argv=args, noninteractive=mode == "noninteractive")
service.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path), launch_arguments=[a.split(":=", 1) for a in args])]))
sys.exit(service.run())
"""


def share() -> Path:
    """The installed package's share folder (launch/ and config/)."""
    return Path(get_package_share_directory("stream_omni_ros"))


def run_until_up_then_ctrl_c(tmp_path: Path, mode: str, launch_file: str, args: list[str],
                             ready: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Launch, wait for every `ready` text in the log, SIGINT the process group like a terminal."""
    log_path = tmp_path / f"{launch_file}.{mode}.log"
    with open(log_path, "w", encoding="utf-8") as log:
        launch = subprocess.Popen(
            [sys.executable, "-c", RUNNER, mode, str(share() / "launch" / launch_file), *args],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + 90
    while not all(text in log_path.read_text() for text in ready):
        assert launch.poll() is None and time.monotonic() < deadline, log_path.read_text()
        time.sleep(0.1)
    os.killpg(launch.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    try:
        status = launch.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(launch.pid, signal.SIGKILL)
        launch.wait()
        raise
    return status, log_path.read_text()


def echo_params(tmp_path: Path) -> Path:
    """YAML with the model-free responder and the private PulseAudio devices."""
    path = tmp_path / "robot.yaml"
    path.write_text(yaml.safe_dump({
        "/**/omni_node": {"ros__parameters": {"responder": "echo"}},
        "/**/audio_capture": {"ros__parameters": {"sound_device": "pulse"}},
        "/**/audio_player": {"ros__parameters": {"sound_device": "pulse"}}}))
    return path


@pytest.mark.parametrize("mode", ["interactive", "noninteractive"])
def test_stream_omni_launch_with_the_shipped_yaml_and_ctrl_c(pulse, tmp_path, mode):
    files = f"{share() / 'config' / 'stream_omni.yaml'},{echo_params(tmp_path)}"
    status, log = run_until_up_then_ctrl_c(
        tmp_path, mode, "stream_omni.launch.py", [f"params_file:={files}"],
        ["responder echo loaded", "capturing 16000 Hz", "[audio_player_node-3]: process started"],
        pulse.client_env(PULSE_SOURCE="mic_sink.monitor"))
    assert status == 0, log
    for node in ("omni_node-1", "audio_capture_node-2", "audio_player_node-3"):
        assert f"[{node}]: process has finished cleanly" in log, log
    assert "process has died" not in log and "Traceback" not in log, log


def test_sim_launch_without_bridge_or_wav_files_starts_the_rest(pulse, tmp_path):
    if subprocess.run([sys.executable, "-c", "from ament_index_python.packages import "
                       "get_package_share_directory as g; g('ros_gz_bridge')"],
                      capture_output=True).returncode == 0:
        pytest.skip("ros_gz_bridge is installed here")
    status, log = run_until_up_then_ctrl_c(
        tmp_path, "noninteractive", "sim.launch.py",
        [f"params_file:={echo_params(tmp_path)}", f"output_dir:={tmp_path / 'out'}"],
        ["responder echo loaded", "[audio_sink_node-1]: process started"], dict(os.environ))
    assert status == 0, log
    assert "ros_gz_bridge is not installed" in log and "wav_files is empty" in log, log
    assert "[audio_sink_node-1]: process has finished cleanly" in log, log
    assert "[omni_node-2]: process has finished cleanly" in log, log
