"""The shipped YAML files reach every node the launch files start, each with its own parameters.

`ros2 launch` cannot run here, but `bringup` starts the same nodes from the same YAML and the same
launch arguments, and rcl applies a params file the same way in either process.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.qos import QoSProfile, ReliabilityPolicy

from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.apps.bringup import NODE_TYPES
from stream_omni_ros.nodes.omni_publishers import STATE_QOS

ROOT = Path(__file__).resolve().parents[3]
STREAM_OMNI_YAML = ROOT / "config" / "stream_omni.yaml"
SIM_YAML = ROOT / "config" / "sim.yaml"
# executable -> the YAML files its launch file gives it (sim.launch.py: both, in this order)
LAUNCHED_WITH = {
    "omni_node": (STREAM_OMNI_YAML, SIM_YAML),
    "audio_capture_node": (STREAM_OMNI_YAML,),
    "audio_player_node": (STREAM_OMNI_YAML,),
    "wav_source_node": (STREAM_OMNI_YAML, SIM_YAML),
    "audio_sink_node": (STREAM_OMNI_YAML, SIM_YAML),
}


def yaml_parameters(files: tuple[Path, ...], node_name: str) -> dict[str, object]:
    """The parameters the files give a node of that name (sections `/**` and `/**/<name>`)."""
    params: dict[str, object] = {}
    for path in files:
        for key, section in yaml.safe_load(path.read_text()).items():
            if key in ("/**", f"/**/{node_name}", node_name, f"/{node_name}"):
                params.update(section["ros__parameters"])
    return params


def test_every_shipped_section_names_a_node_of_the_launch_files():
    names = {node_type.node_name for node_type in NODE_TYPES.values()}
    for path in (STREAM_OMNI_YAML, SIM_YAML):
        for key in yaml.safe_load(path.read_text()):
            assert key == "/**" or key.removeprefix("/**/") in names, f"{path.name}: {key}"


@pytest.mark.parametrize("executable", sorted(LAUNCHED_WITH))
def test_the_shipped_yaml_reaches_the_node_with_only_parameters_it_declares(
        executable, pulse, sound, tmp_path, monkeypatch):
    for name, value in pulse.env.items():  # the sound-card nodes open the private server
        monkeypatch.setenv(name, value)
    node_type = NODE_TYPES[executable]
    files = LAUNCHED_WITH[executable]
    wav = sound.write_tone(tmp_path / "tone.wav", 440.0, 0.5)
    overrides = {"omni_node": ["autostart:=false"], "audio_capture_node": ["sound_device:=pulse"],
                 "audio_player_node": ["sound_device:=pulse"],
                 "wav_source_node": [f"files:=['{wav}']"],
                 "audio_sink_node": [f"output_dir:={tmp_path}"]}[executable]
    args = ["test", "--ros-args", "-r", "__ns:=/robot"]  # the sections match in a namespace
    for path in files:
        args += ["--params-file", str(path)]
    for override in overrides:
        args += ["-p", override]
    rclpy.init(args=args)
    node = None
    try:
        module = importlib.import_module(node_type.module)
        node = getattr(module, node_type.class_name)()  # raises if a parameter is wrong
        expected = yaml_parameters(files, node_type.node_name)
        undeclared = sorted(name for name in expected if not node.has_parameter(name))
        assert not undeclared, f"{executable} does not declare {undeclared}"
        for name, value in expected.items():
            assert node.get_parameter(name).value == value, name
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()


def test_bringup_with_the_shipped_yaml_runs_microphone_speaker_and_assistant(pulse, ros_node,
                                                                              sound):
    chunks: list[AudioChunk] = []
    ros_node.create_subscription(AudioChunk, "audio/in", chunks.append,
                                 QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE))
    states: list[NodeState] = []
    ros_node.create_subscription(NodeState, "state", states.append, STATE_QOS)
    # The launch file's default params_file, the shipped YAML (device cuda for the model): the
    # sound-card nodes must not take that for a sound device.
    bringup = subprocess.Popen(
        [sys.executable, "-m", "stream_omni_ros.cli", "bringup",
         f"params_file:={STREAM_OMNI_YAML}", "-p", "omni_node:responder:=echo",
         "-p", "audio_capture:sound_device:=pulse", "-p", "audio_player:sound_device:=pulse"],
        cwd=ROOT, env=pulse.client_env(PULSE_SOURCE="mic_sink.monitor"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        running = sound.spin_until(ros_node, lambda: (len(chunks) >= 5 and any(
            s.label == "listening" for s in states)) or bringup.poll() is not None, 60)
    finally:
        bringup.send_signal(signal.SIGINT)
        log = bringup.communicate(timeout=120)[0]
    assert running and bringup.returncode == 0, log
    assert "omni_node, audio_capture_node, audio_player_node in one process" in log
    assert "names no" not in log and "Traceback" not in log, log


def test_bringup_loads_the_shipped_yaml_without_a_params_file():
    from stream_omni_ros.apps.bringup import BringupConfig, rcl_arguments

    argv = rcl_arguments(BringupConfig(), None)
    loaded = Path(argv[argv.index("--params-file") + 1])
    assert loaded.name == "stream_omni.yaml" and loaded.read_text() == STREAM_OMNI_YAML.read_text()
    assert os.path.isabs(loaded)
