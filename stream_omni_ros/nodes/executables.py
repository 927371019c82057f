"""Find and start the package's installed node executables (what `ros2 run` would start)."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix

from stream_omni_ros.errors import ConfigError

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


def stop_node(process: subprocess.Popen, timeout_s: float = 20.0) -> int:
    """SIGINT, as Ctrl-C would (the node releases its engine); kill after `timeout_s`.

    Returns the exit status.
    """
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
