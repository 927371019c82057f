"""Stream-Omni on a robot: omni_node (lifecycle) + optional microphone and speaker nodes.

    ros2 launch stream_omni_ros stream_omni.launch.py model_path:=/models/stream-omni-8b \
        cosyvoice_path:=/models/CosyVoice-300M-25Hz image_topic:=/camera/image_raw

Empty arguments leave the node's own defaults (defaults live in the config dataclasses).
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

PACKAGE = "stream_omni_ros"
ARGUMENTS = {
    "namespace": ("", "namespace of every node"),
    "params_file": ("", "comma-separated YAML override files (keyed /**: ros__parameters:); "
                        "empty = the package's config/stream_omni.yaml"),
    "use_sim_time": ("false", "use /clock (Gazebo) instead of the wall clock"),
    "model_path": ("", "Stream-Omni checkpoint folder (model.path); empty = node default"),
    "cosyvoice_path": ("", "CosyVoice-300M-25Hz folder (cosyvoice.path); empty = node default"),
    "device": ("", "torch device for the model, e.g. cuda:0; empty = node default"),
    "image_topic": ("image", "camera topic (sensor_msgs/Image) remapped to omni_node's image"),
    "audio_in_topic": ("audio/in", "microphone AudioChunk topic"),
    "launch_audio_capture": ("true", "start audio_capture_node (the robot's microphone)"),
    "launch_audio_player": ("true", "start audio_player_node (the robot's speaker)"),
    "autostart": ("true", "configure and activate omni_node without a lifecycle manager"),
    "launch_audio_common_bridge": ("false", "start audio_common_bridge (audio_common capture "
                                            "and play topics, hri_msgs LiveSpeech)"),
}
# Launch argument -> omni_node parameter, set only when the argument is not empty.
NODE_PARAMETERS = {"model_path": "model.path", "cosyvoice_path": "cosyvoice.path",
                   "device": "device"}


def is_true(text: str) -> bool:
    """Launch-argument boolean ("true"/"1"/"yes")."""
    return text.strip().lower() in ("true", "1", "yes", "on")


def launch_setup(context, *args, **kwargs):
    """Build the nodes from the argument values."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    common = {"use_sim_time": is_true(value["use_sim_time"])}
    files = [f.strip() for f in value["params_file"].split(",") if f.strip()] or [
        os.path.join(get_package_share_directory(PACKAGE), "config", "stream_omni.yaml")]
    overrides = {param: value[arg] for arg, param in NODE_PARAMETERS.items() if value[arg]}
    overrides["autostart"] = is_true(value["autostart"])
    nodes = [LifecycleNode(
        package="stream_omni_ros", executable="omni_node", name="omni_node",
        namespace=value["namespace"], output="screen",
        parameters=[*files, common, overrides],
        remappings=[("image", value["image_topic"]), ("audio/in", value["audio_in_topic"])])]
    if is_true(value["launch_audio_capture"]):
        nodes.append(Node(package="stream_omni_ros", executable="audio_capture_node",
                          name="audio_capture", namespace=value["namespace"], output="screen",
                          parameters=[*files, common],
                          remappings=[("audio/in", value["audio_in_topic"])]))
    if is_true(value["launch_audio_player"]):
        nodes.append(Node(package="stream_omni_ros", executable="audio_player_node",
                          name="audio_player", namespace=value["namespace"], output="screen",
                          parameters=[*files, common]))
    if is_true(value["launch_audio_common_bridge"]):
        nodes.append(Node(package="stream_omni_ros", executable="audio_common_bridge",
                          name="audio_common_bridge", namespace=value["namespace"],
                          output="screen", parameters=[*files, common],
                          remappings=[("audio/in", value["audio_in_topic"])]))
    return nodes


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the nodes are built once their values are known."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=launch_setup)])
