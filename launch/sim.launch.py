"""Stream-Omni in Gazebo: camera and /clock from ros_gz_bridge, WAV files instead of a sound card.

    ros2 launch stream_omni_ros sim.launch.py gz_image_topic:=/world/default/camera/image \
        wav_files:=/data/question1.wav,/data/question2.wav model_path:=/models/stream-omni-8b

Start Gazebo (gz sim <world>) yourself. wav_source_node speaks the WAV files on audio/in, paced
by sim time; audio_sink_node writes the spoken answers to output_dir as WAV files.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "stream_omni_ros"
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


def launch_setup(context, *args, **kwargs):
    """Bridge, WAV source, WAV sink and the assistant (via stream_omni.launch.py)."""
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    share = get_package_share_directory(PACKAGE)
    files = [os.path.join(share, "config", name) for name in ("stream_omni.yaml", "sim.yaml")]
    files += [value["params_file"]] if value["params_file"] else []
    namespace, image = value["namespace"], value["gz_image_topic"]
    bridge = Node(package="ros_gz_bridge", executable="parameter_bridge", name="gz_bridge",
                  namespace=namespace, output="screen",
                  arguments=["/clock@rosgraph_msgs/msg/Clock[gz.msgs.Clock",
                             f"{image}@sensor_msgs/msg/Image[gz.msgs.Image"],
                  remappings=[(image, "image")], parameters=[{"use_sim_time": True}])
    wavs = [f.strip() for f in value["wav_files"].split(",") if f.strip()]
    source = Node(package="stream_omni_ros", executable="wav_source_node", name="wav_source",
                  namespace=namespace, output="screen",
                  parameters=[*files, {"use_sim_time": True}, {"files": wavs or [""]}])
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
    return [bridge, source, sink, assistant]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments; the actions are built once their values are known."""
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, (default, description) in ARGUMENTS.items()]
        + [OpaqueFunction(function=launch_setup)])
