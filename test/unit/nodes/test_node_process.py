"""An rclpy without post-set parameter callbacks (ROS 2 Humble) is refused with the reason."""
from __future__ import annotations

import subprocess
import sys

import pytest

# Humble's rclpy, simulated: the real one minus the method these nodes need.
AS_ON_HUMBLE = "import rclpy.node; del rclpy.node.Node.add_post_set_parameters_callback; "


@pytest.mark.parametrize("entry", [
    "from stream_omni_ros.nodes.audio_sink_node import main; main()",
    "import sys; from stream_omni_ros.apps.bringup import main; sys.exit(main(['--nodes', "
    "'audio_sink_node']))"])
def test_an_rclpy_without_post_set_parameter_callbacks_is_refused_at_start(entry):
    result = subprocess.run([sys.executable, "-c", AS_ON_HUMBLE + entry], capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode in (1, 2), result.stderr
    assert "Humble" in result.stderr and "Jazzy and Kilted" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
