"""bringup: the nodes of launch/stream_omni.launch.py in ONE process, from the same params YAML.

For robots without `ros2 launch` (or without the ros2 CLI at all). It takes the launch file's
arguments the same way (`model_path:=... launch_audio_player:=false`) and gives the nodes the
launch file's names, so one params YAML serves both. Parameters reach the nodes as `--ros-args`
would pass them: `--params-file FILE`s, then per-node overrides `-p NODE:NAME:=VALUE` (written to
a generated YAML section of that node), then `-p NAME:=VALUE` for all nodes; anything after
`--ros-args` goes to rcl unchanged (remaps, log levels). All nodes share one
MultiThreadedExecutor; SIGINT/SIGTERM shut them down the way each node's own main() would
(nodes/node_process.py). Without params files it loads the package's config/stream_omni.yaml, as
the launch file does.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
import yaml
from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from stream_omni_ros.errors import ConfigError, StreamOmniError
from stream_omni_ros.nodes.node_process import (exit_process, init_rclpy, shut_down,
                                                 spin_until_stopped)

PACKAGE = "stream_omni_ros"
ROS_ARGS = "--ros-args"
PACKAGE_PARAMS_FILE = Path("config") / "stream_omni.yaml"


@dataclass(frozen=True)
class NodeType:
    """An executable's node class and its names (exit steps are methods of the node)."""

    module: str
    class_name: str
    node_name: str  # the name the class gives it, as the launch files do (YAML keys use it)


_NODES = "stream_omni_ros.nodes."
# Executable name -> node class, as bin/<executable> would start it.
NODE_TYPES: dict[str, NodeType] = {
    "omni_node": NodeType(_NODES + "omni_node", "OmniNode", "omni_node"),
    "audio_capture_node": NodeType(_NODES + "audio_capture_node", "AudioCaptureNode",
                                   "audio_capture"),
    "audio_player_node": NodeType(_NODES + "audio_player_node", "AudioPlayerNode",
                                  "audio_player"),
    "wav_source_node": NodeType(_NODES + "wav_source_node", "WavSourceNode", "wav_source"),
    "audio_sink_node": NodeType(_NODES + "audio_sink_node", "AudioSinkNode", "audio_sink"),
}
DEFAULT_EXECUTABLES = ("omni_node", "audio_capture_node", "audio_player_node")
OMNI = NODE_TYPES["omni_node"].node_name
# launch/stream_omni.launch.py's arguments, and what each one changes.
LAUNCH_ARGUMENTS = ("namespace", "params_file", "use_sim_time", "model_path", "cosyvoice_path",
                    "device", "image_topic", "audio_in_topic", "launch_audio_capture",
                    "launch_audio_player", "autostart")
OMNI_LAUNCH_PARAMETERS = {"model_path": "model.path", "cosyvoice_path": "cosyvoice.path",
                          "device": "device"}  # set only when not empty, as in the launch file
OPTIONAL_EXECUTABLES = {"launch_audio_capture": "audio_capture_node",
                        "launch_audio_player": "audio_player_node"}
# Only omni_node subscribes `image`; capture and omni_node share `audio/in`: global rules suffice.
REMAPPED_TOPICS = {"image_topic": "image", "audio_in_topic": "audio/in"}
_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True,
             "false": False, "0": False, "no": False, "off": False}


@dataclass(frozen=True)
class BringupConfig:
    """Which executables to start and the parameters and rcl arguments they get."""

    executables: tuple[str, ...] = DEFAULT_EXECUTABLES
    params_files: tuple[Path, ...] = ()  # as in the launch file: empty = default_params_file()
    # node name (as in the launch files) -> {parameter: value}; applied after params_files
    node_params: dict[str, dict[str, object]] = field(default_factory=dict)
    global_params: tuple[str, ...] = ()  # "name:=value", applied to every node, last
    ros_args: tuple[str, ...] = ()  # passed to rcl after everything else
    num_threads: int = 8

    def __post_init__(self) -> None:
        unknown = [name for name in self.executables if name not in NODE_TYPES]
        if unknown or not self.executables or len(set(self.executables)) < len(self.executables):
            raise ConfigError(f"executables {list(self.executables)}; expected one or more of "
                              f"{sorted(NODE_TYPES)}, each once (unknown: {unknown})")
        if self.num_threads < 1:
            raise ConfigError(f"num_threads = {self.num_threads}; expected >= 1")


def parse_param_override(text: str) -> tuple[str | None, str, object]:
    """'NODE:NAME:=VALUE' or 'NAME:=VALUE' -> (node or None, name, YAML-parsed value)."""
    target, separator, literal = text.partition(":=")
    if not separator or not target:
        raise ConfigError(f"parameter override {text!r}; expected NAME:=VALUE or "
                          "NODE:NAME:=VALUE")
    node_name, _, name = target.rpartition(":")
    try:
        value = yaml.safe_load(literal) if literal else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"parameter override {text!r}: value is not YAML ({error})") from error
    return node_name or None, name, value


def node_params_to_yaml(node_params: dict[str, dict[str, object]]) -> str:
    """Per-node parameters as a ROS 2 params file, matching the node in any namespace."""
    # A bare `node:` key would only match /node; `/**/node` also matches /robot/node.
    return yaml.safe_dump({(node if node.startswith("/") else f"/**/{node}"):
                           {"ros__parameters": dict(params)}
                           for node, params in node_params.items()}, allow_unicode=True)


def default_params_file() -> Path:
    """config/stream_omni.yaml of the installed package, else of this source tree."""
    try:
        installed = Path(get_package_share_directory(PACKAGE)) / PACKAGE_PARAMS_FILE
    except PackageNotFoundError:
        installed = None
    source = Path(__file__).resolve().parents[2] / PACKAGE_PARAMS_FILE
    for candidate in (installed, source):
        if candidate is not None and candidate.is_file():
            return candidate
    raise ConfigError(f"no {PACKAGE_PARAMS_FILE} installed ({installed}) or in the source tree "
                      f"({source}); pass --params-file")


def rcl_arguments(config: BringupConfig, node_params_file: Path | None) -> list[str]:
    """argv for rclpy.init: params files, per-node overrides, -p overrides, renames, extras."""
    argv = [PACKAGE + "_bringup", ROS_ARGS]
    for params_file in config.params_files or (default_params_file(),):
        if not Path(params_file).is_file():
            raise ConfigError(f"params file {params_file} does not exist")
        argv += ["--params-file", str(params_file)]
    if node_params_file is not None:
        argv += ["--params-file", str(node_params_file)]
    for override in config.global_params:
        argv += ["-p", override]
    argv += list(config.ros_args)
    return argv


def create_node(executable: str) -> Node:
    """Build the node an executable would build (its parameters come from the context)."""
    node_type = NODE_TYPES[executable]
    node_class = getattr(importlib.import_module(node_type.module), node_type.class_name)
    return node_class()


def create_nodes(executables: Sequence[str], executor: MultiThreadedExecutor,
                 nodes: dict[str, Node]) -> None:
    """Build every node into `nodes` and add it to the executor; ConfigError names a failure."""
    for executable in executables:
        try:
            nodes[executable] = create_node(executable)
        except (StreamOmniError, ValueError, OSError) as error:
            raise ConfigError(f"starting {executable} failed: {error}") from error
        executor.add_node(nodes[executable])


def spin_nodes(config: BringupConfig, node_params_file: Path | None) -> int:
    """Init rclpy, build every node, spin until SIGINT/SIGTERM, shut down; 1 if a node failed."""
    stop = init_rclpy(rcl_arguments(config, node_params_file))
    executor = MultiThreadedExecutor(num_threads=config.num_threads)
    nodes: dict[str, Node] = {}
    logger = rclpy.logging.get_logger("bringup")
    try:
        create_nodes(config.executables, executor, nodes)
        logger.info(f"running {', '.join(config.executables)} in one process")
        spin_until_stopped(executor, stop)
    except StreamOmniError as error:
        logger.fatal(str(error))
        return 1
    finally:
        shut_down(executor, list(nodes.values()))
    return 0


def run_bringup(config: BringupConfig) -> int:
    """Start the configured nodes in this process until interrupted; the exit status."""
    if not config.node_params:
        return spin_nodes(config, None)
    with tempfile.TemporaryDirectory(prefix="stream_omni_bringup_") as folder:
        params_file = Path(folder) / "node_overrides.yaml"
        params_file.write_text(node_params_to_yaml(config.node_params), encoding="utf-8")
        return spin_nodes(config, params_file)


def _launch_bool(name: str, value: str) -> bool:
    if value.strip().lower() not in _BOOLEANS:
        raise ConfigError(f"launch argument {name}:={value!r}; expected true or false")
    return _BOOLEANS[value.strip().lower()]


def apply_launch_arguments(config: BringupConfig, launch_args: Sequence[str]) -> BringupConfig:
    """Apply launch/stream_omni.launch.py's NAME:=VALUE arguments as `ros2 launch` would."""
    executables, params_files = list(config.executables), config.params_files
    node_params = {node: dict(params) for node, params in config.node_params.items()}
    global_params, ros_args = list(config.global_params), list(config.ros_args)
    for argument in launch_args:
        name, separator, value = argument.partition(":=")
        if not separator or name not in LAUNCH_ARGUMENTS:
            raise ConfigError(f"launch argument {argument!r}; expected NAME:=VALUE with NAME "
                              f"one of {list(LAUNCH_ARGUMENTS)}")
        if name in OMNI_LAUNCH_PARAMETERS and value:
            node_params.setdefault(OMNI, {})[OMNI_LAUNCH_PARAMETERS[name]] = value
        elif name == "autostart":
            node_params.setdefault(OMNI, {})["autostart"] = _launch_bool(name, value)
        elif name in OPTIONAL_EXECUTABLES and not _launch_bool(name, value):
            executables = [e for e in executables if e != OPTIONAL_EXECUTABLES[name]]
        elif name == "params_file":
            params_files = tuple(Path(f.strip()) for f in value.split(",") if f.strip())
        elif name == "use_sim_time":
            global_params.append(f"use_sim_time:={str(_launch_bool(name, value)).lower()}")
        elif name == "namespace" and value:
            ros_args += ["-r", f"__ns:=/{value.strip('/')}"]
        elif name in REMAPPED_TOPICS and value:
            ros_args += ["-r", f"{REMAPPED_TOPICS[name]}:={value}"]
    return dataclasses.replace(config, executables=tuple(executables), params_files=params_files,
                               node_params=node_params, global_params=tuple(global_params),
                               ros_args=tuple(ros_args))


def add_bringup_arguments(parser: argparse.ArgumentParser) -> None:
    """The bringup options (shared by bin/bringup and `stream-omni-ros bringup`)."""
    parser.add_argument("launch_arguments", nargs="*", metavar="NAME:=VALUE",
                        help=f"arguments of launch/stream_omni.launch.py: "
                             f"{', '.join(LAUNCH_ARGUMENTS)}")
    parser.add_argument("--params-file", action="append", type=Path, default=[],
                        help="ROS 2 params YAML (repeatable; like params_file:=A,B)")
    parser.add_argument("--nodes", default=",".join(DEFAULT_EXECUTABLES),
                        help=f"comma-separated executables to start, of {sorted(NODE_TYPES)}")
    parser.add_argument("-p", "--param", action="append", default=[], dest="params",
                        metavar="[NODE:]NAME:=VALUE",
                        help="parameter override for one node (NODE: its launch-file name, "
                             "e.g. omni_node) or for all nodes")
    parser.add_argument("--threads", type=int, default=BringupConfig.num_threads,
                        help="executor threads")


def config_from_args(args: argparse.Namespace, ros_args: Sequence[str] = ()) -> BringupConfig:
    """BringupConfig from parsed options: launch arguments first, then -p overrides."""
    executables = tuple(name.strip() for name in args.nodes.split(",") if name.strip())
    config = apply_launch_arguments(BringupConfig(
        executables, tuple(args.params_file), ros_args=tuple(ros_args),
        num_threads=args.threads), args.launch_arguments)
    node_params = config.node_params
    global_params = list(config.global_params)
    node_names = {t.node_name for t in NODE_TYPES.values()}
    for override in args.params:
        node_name, name, value = parse_param_override(override)
        if node_name is None:
            global_params.append(override)
            continue
        node_name = NODE_TYPES[node_name].node_name if node_name in NODE_TYPES else node_name
        if node_name not in node_names:
            raise ConfigError(f"parameter override {override!r} names node {node_name!r}; "
                              f"expected one of {sorted(node_names)}")
        node_params.setdefault(node_name, {})[name] = value
    return dataclasses.replace(config, node_params=node_params,
                               global_params=tuple(global_params))


def split_ros_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(our arguments, the arguments from --ros-args on, without the flag itself)."""
    argv = list(argv)
    if ROS_ARGS not in argv:
        return argv, []
    cut = argv.index(ROS_ARGS)
    return argv[:cut], argv[cut + 1:]


def main(argv: list[str] | None = None) -> int:
    """Entry point of bin/bringup: parse options, run the nodes, exit (2 on bad arguments)."""
    own_args, ros_args = split_ros_args(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="bringup", description=__doc__.splitlines()[0],
                                     epilog="Arguments after --ros-args go to rcl unchanged.")
    add_bringup_arguments(parser)
    try:
        config = config_from_args(parser.parse_intermixed_args(own_args), ros_args)
        status = run_bringup(config)
    except ConfigError as error:
        print(f"bringup: {error}", file=sys.stderr)
        return 2
    exit_process(status)


if __name__ == "__main__":
    sys.exit(main())
