"""Python modules that a robot may lack: import them with one clear error naming the fix.

On a robot the apt and rosdep keys bring most libraries; the few without a rosdep key come from
`scripts/requirements-robot.txt` (README, "On a robot"). A module missing there must fail the
part that needs it with a message naming the module and how to install it, never with a bare
ModuleNotFoundError deep inside a lifecycle transition.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from stream_omni_ros.errors import StreamOmniError

ROBOT_REQUIREMENTS = "scripts/requirements-robot.txt"
# import name -> pip distribution that provides it
PIP_DISTRIBUTIONS = {"soxr": "soxr", "silero_vad": "silero-vad", "rosbags.image": "rosbags-image",
                     "safetensors": "safetensors", "transformers": "transformers",
                     "onnxruntime": "onnxruntime", "PIL": "pillow"}


class MissingModuleError(StreamOmniError):
    """A Python module that a part of the package needs is not installed."""


def install_hint(module: str) -> str:
    """How to install `module`: its pip distribution and the robot requirements file."""
    distribution = PIP_DISTRIBUTIONS.get(module, module.split(".")[0])
    return (f"install it with `python3 -m pip install {distribution}` (on a robot: "
            f"`python3 -m pip install -r {ROBOT_REQUIREMENTS}`)")


def require_module(module: str, needed_for: str) -> ModuleType:
    """Import `module`; MissingModuleError names it, what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module  # `module` itself, or a module it imports
        raise MissingModuleError(f"Python module {missing!r} is not installed ({needed_for}); "
                                 f"{install_hint(missing)}") from error
