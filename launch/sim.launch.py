"""Stream-Omni in Gazebo: camera and /clock from ros_gz_bridge, WAV files instead of a sound card.

    ros2 launch stream_omni_ros sim.launch.py gz_image_topic:=/world/default/camera/image \
        wav_files:=/data/question1.wav,/data/question2.wav model_path:=/models/stream-omni-8b

Start Gazebo (gz sim <world>) yourself. wav_source_node speaks the WAV files on audio/in, paced
by sim time; audio_sink_node writes the spoken answers to output_dir as WAV files. Without
ros_gz_bridge installed, or without wav_files, the launch says so and starts the rest.
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, IncludeLaunchDescription, LogInfo,
                            OpaqueFunction)
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "stream_omni_ros"
BRIDGE_PACKAGE = "ros_gz_bridge"
ARGUMENTS = {
    "namespace": ("", "namespace of every node"),
    "gz_image_topic": ("/camera", "Gazebo camera topic bridged to <namespace>/image"),
    "wav_files": ("", "comma-separated WAV files spoken on audio/in"),
    "output_dir": ("sim_audio_out", "where audio_sink_node writes the spoken answers"),
    "params_file": ("", "YAML overrides applied after config/stream_omni.yaml and sim.yaml"),
    "model_path": ("", "Stream-Omni checkpoint folder; empty = node default"),
    "cosyvoice_path": ("", "CosyVoice-300M-25Hz folder; empty = node default"),
    "device": ("", "torch device for the model; empty = node default"),
}


def is_installed(package: str) -> bool:
    """Whether the ament index knows `package` (ros_gz_bridge is not on every robot)."""
    try:
        get_package_share_directory(package)
    except PackageNotFoundError:
        return False
    return True


def gazebo_bridge(namespace: str, image: str):
    """ros_gz_bridge for /clock and the camera, or a log line saying how to install it."""
    if not is_installed(BRIDGE_PACKAGE):
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        return LogInfo(msg=f"{BRIDGE_PACKAGE} is not installed (sudo apt install "
                           f"ros-{distro}-ros-gz-bridge): no /clock and no camera from Gazebo; "
                           "the other nodes start and wait for sim time")
    return Node(package=BRIDGE_PACKAGE, executable="parameter_bridge", name="gz_bridge",
                namespace=namespace, output="screen",
                arguments=["/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock",
                           f"{image}@sensor_msgs/msg/Image[gz.msgs.Image"],
                remappings=[(image, "image")], parameters=[{"use_sim_time": True}])


def wav_source(namespace: str, files: list[str], wav_files: str):
    """wav_source_node speaking `wav_files`, or a log line when none are given."""
    wavs = [f.strip() for f in wav_files.split(",") if f.strip()]
    if not wavs:
        return LogInfo(msg="wav_files is empty: no wav_source_node (audio/in stays silent); "
                           "pass wav_files:=/path/a.wav,/path/b.wav")
    return Node(package="stream_omni_ros", executable="wav_source_node", name="wav_source",
                namespace=namespace, output="screen",
                parameters=[*files, {"use_sim_time": True}, {"files": wavs}])


def launch_setup(context, *args, **kwargs):
    """Bridge, WAV source, WAV sink and the assistant (via stream_omni.launch.py)."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = get_package_share_directory(PACKAGE)
    files = [os.path.join(share, "config", name) for name in ("stream_omni.yaml", "sim.yaml")]
    files += [value["params_file"]] if value["params_file"] else []
    namespace = value["namespace"]
    sink = Node(package="stream_omni_ros", executable="audio_sink_node", name="audio_sink",
                namespace=namespace, output="screen",
                parameters=[*files, {"use_sim_time": True, "output_dir": value["output_dir"]}])
    assistant = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, "launch", "stream_omni.launch.py")),
        launch_arguments={
            "namespace": namespace, "params_file": ",".join(files),
            "use_sim_time": "true", "model_path": value["model_path"],
            "cosyvoice_path": value["cosyvoice_path"], "device": value["device"],
            "image_topic": "image", "audio_in_topic": "audio/in",
            "launch_audio_capture": "false", "launch_audio_player": "false",
            "autostart": "true"}.items())
    return [gazebo_bridge(namespace, value["gz_image_topic"]),
            wav_source(namespace, files, value["wav_files"]), sink, assistant]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the actions are built once their values are known."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=launch_setup)])
