"""Find and start the package's installed node executables (what `ros2 run` would start)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import rclpy
from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from stream_omni_ros.errors import ConfigError, StreamOmniError

PACKAGE = "stream_omni_ros"


def executable_path(name: str) -> Path:
    """Path of an installed executable under <prefix>/lib/stream_omni_ros/."""
    try:
        prefix = Path(get_package_prefix(PACKAGE))
    except PackageNotFoundError as err:
        raise ConfigError(f"package {PACKAGE!r} is not on AMENT_PREFIX_PATH: build it with "
                          "scripts/setup.sh and source .venv/env.sh") from err
    path = prefix / "lib" / PACKAGE / name
    if not os.access(path, os.X_OK):
        raise ConfigError(f"executable {name!r} is not installed at {path}")
    return path


def start_node(name: str, params: dict[str, object] | None = None,
               remaps: dict[str, str] | None = None, **popen_kwargs) -> subprocess.Popen:
    """Start an installed node in its own process with `--ros-args` parameters and remaps."""
    argv = [str(executable_path(name)), "--ros-args"]
    for key, value in (params or {}).items():
        literal = str(value).lower() if isinstance(value, bool) else value
        if isinstance(value, (list, tuple)):
            literal = "[" + ",".join(f'"{v}"' for v in value) + "]"
        argv += ["-p", f"{key}:={literal}"]
    for source, target in (remaps or {}).items():
        argv += ["-r", f"{source}:={target}"]
    return subprocess.Popen(argv, **popen_kwargs)


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> int:
    """Init rclpy, build the node, spin until SIGINT/SIGTERM; status 1 with a log on error."""
    # Our own signal handling keeps the context valid while destroy_node() stops devices.
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(signum, signal.default_int_handler)
    node = None
    try:
        node = make_node()
        while rclpy.ok():  # a timeout, so that Python's signal handlers get to run
            rclpy.spin_once(node, timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except StreamOmniError as err:
        rclpy.logging.get_logger(PACKAGE).fatal(str(err))
        return 1
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
