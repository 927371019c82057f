"""`stream-omni-ros bringup`: several nodes in ONE process from a params YAML plus overrides."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import soundfile
import yaml

from stream_omni_ros.msg import NodeState
from stream_omni_ros.nodes.omni_publishers import STATE_QOS

REPO = Path(__file__).resolve().parents[3]


def start_bringup(args: list[str]) -> subprocess.Popen:
    """Start `python -m stream_omni_ros.cli bringup ...` from the repository root."""
    return subprocess.Popen([sys.executable, "-m", "stream_omni_ros.cli", "bringup", *args],
                            cwd=REPO, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float) -> bool:
    """Wait until `path` exists (False if the process died or time ran out)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return path.exists()


def wait_for_audio(log: Path, process: subprocess.Popen, seconds: float,
                   timeout_s: float) -> bool:
    """Wait until the sink has written `seconds` of audio (False on death or time-out)."""
    deadline = time.monotonic() + timeout_s

    def written() -> float:
        lines = log.read_text().splitlines() if log.exists() else []
        return sum(json.loads(line)["audio_s"] for line in lines)
    while written() < seconds - 1e-6 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    return written() >= seconds - 1e-6


def test_source_and_sink_share_one_process_and_the_params_file(tmp_path):
    sent = (0.3 * np.sin(np.arange(24000) * 2 * np.pi * 440 / 16000)).astype(np.float32)
    soundfile.write(tmp_path / "tone.wav", sent, 16000, subtype="PCM_16")
    params = {"wav_source": {"ros__parameters": {"files": [str(tmp_path / "tone.wav")],
                                                 "gap_s": 0.0, "chunk_s": 0.01}},
              "audio_sink": {"ros__parameters": {"output_dir": str(tmp_path / "not_used"),
                                                 "idle_timeout_s": 2.0}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    received = tmp_path / "received"
    bringup = start_bringup(["--nodes", "wav_source_node,audio_sink_node",
                             "--params-file", str(tmp_path / "params.yaml"),
                             "-p", f"audio_sink:output_dir:={received}",
                             "--ros-args", "-r", "audio_sink:audio/out:=audio/in"])
    try:
        arrived = wait_for_audio(received / "turns.jsonl", bringup, 1.5, 120)
    finally:
        bringup.send_signal(signal.SIGINT)
        log = bringup.communicate(timeout=120)[0]
    assert arrived, log
    assert bringup.returncode == 0, log
    assert "wav_source_node, audio_sink_node in one process" in log
    assert not (tmp_path / "not_used").exists()  # the -p override beat the params file
    # A loaded machine may pause delivery past the idle timeout: the sink then splits the turn.
    parts = [soundfile.read(f, dtype="int16") for f in sorted(received.glob("*.wav"))]
    recorded = np.concatenate([samples for samples, _ in parts])
    expected, _ = soundfile.read(tmp_path / "tone.wav", dtype="int16")
    assert {rate for _, rate in parts} == {16000} and np.array_equal(recorded, expected)


def test_a_node_that_cannot_start_fails_the_process_with_its_reason(tmp_path):
    bringup = start_bringup(["--nodes", "audio_sink_node,wav_source_node",
                             "-p", f"audio_sink:output_dir:={tmp_path}",
                             "-p", f"wav_source:files:=['{tmp_path / 'missing.wav'}']"])
    log = bringup.communicate(timeout=120)[0]
    assert bringup.returncode == 1, log
    assert "starting wav_source_node failed" in log and "missing.wav" in log


def test_unknown_executable_is_named(tmp_path):
    bringup = start_bringup(["--nodes", "omni_node,no_such_node"])
    log = bringup.communicate(timeout=120)[0]
    assert bringup.returncode == 2
    assert "no_such_node" in log and "wav_source_node" in log  # names the known ones


def test_launch_arguments_load_the_model_under_a_namespace(tmp_path, tiny_assets):
    bringup = start_bringup([
        f"model_path:={tiny_assets.model_path}", f"cosyvoice_path:={tiny_assets.cosyvoice_path}",
        "device:=cpu", "namespace:=robot", "image_topic:=/camera/rgb",
        "launch_audio_capture:=false", "launch_audio_player:=false",
        "-p", "omni_node:dtype:=fp32"])
    rclpy.init()
    node = rclpy.create_node("bringup_test")
    states = []
    node.create_subscription(NodeState, "/robot/state",
                             lambda msg: states.append(f"{msg.label} {msg.detail}".strip()),
                             STATE_QOS)
    try:
        deadline = time.monotonic() + 120
        while not any(s.startswith(("listening", "idle configure failed")) for s in states) \
                and bringup.poll() is None and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        camera_subscribers = node.count_subscribers("/camera/rgb")
        names = node.get_node_names_and_namespaces()
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        bringup.send_signal(signal.SIGINT)
        log = bringup.communicate(timeout=120)[0]
    assert "listening" in states, log  # the tiny model loaded from the launch arguments
    assert camera_subscribers == 1, log  # image_topic remapped omni_node's camera input
    assert ("omni_node", "/robot") in names  # the launch file's node name, so its YAML keys apply
    assert "running omni_node in one process" in log  # capture and player left out
    assert bringup.returncode == 0, log


def test_launch_arguments_map_to_the_same_rcl_arguments_as_the_launch_file(tmp_path):
    from stream_omni_ros.apps.bringup import BringupConfig, apply_launch_arguments, rcl_arguments

    files = [tmp_path / "a.yaml", tmp_path / "b.yaml"]
    for path in files:
        path.write_text("/**:\n  ros__parameters: {}\n")
    config = apply_launch_arguments(BringupConfig(), [
        f"params_file:={files[0]},{files[1]}", "use_sim_time:=True", "audio_in_topic:=/mic",
        "autostart:=false", "model_path:=", "launch_audio_player:=0"])
    assert config.executables == ("omni_node", "audio_capture_node")
    assert config.node_params == {"omni_node": {"autostart": False}}  # empty model_path: not set
    argv = " ".join(rcl_arguments(config, None))
    assert f"--params-file {files[0]} --params-file {files[1]}" in argv
    assert "-p use_sim_time:=true" in argv and "-r audio/in:=/mic" in argv
    assert "__node:=" not in argv  # the classes already use the launch files' node names


@pytest.mark.parametrize("argument, named", [
    ("autostart:=maybe", "autostart"), ("modelpath:=/m", "modelpath"), ("device", "NAME:=VALUE")])
def test_bad_launch_arguments_are_named(argument, named):
    from stream_omni_ros.errors import ConfigError
    from stream_omni_ros.apps.bringup import BringupConfig, apply_launch_arguments

    with pytest.raises(ConfigError, match=named):
        apply_launch_arguments(BringupConfig(), [argument])
