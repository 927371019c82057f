"""The robot's audio_common and HRI side for the bridge tests: runs in its own process.

It needs the interface packages (the test stand-ins), which the test process does not load.
usage:
  audio_common_peer.py capture NPY RATE FORMAT CODING [NPY RATE FORMAT CODING ...]
      plays each float32 [frames, channels] .npy file as audio_capture_node would: AudioInfo
      on /audio/audio_info, then AudioDataStamped chunks of 20 ms on /audio/audio_stamped
      (2x real time); waits for a line on stdin before each file after the first.
  audio_common_peer.py listen VOICE_TOPIC AUDIO_FILE
      appends the data of each AudioData (/speech/audio) to AUDIO_FILE and prints one JSON
      line per AudioData, AudioInfo (/speech/audio_info) and LiveSpeech (VOICE_TOPIC).
Both print "ready" once the bridge's endpoints are matched.
"""
import json
import sys
import os
import signal
import threading
import time

import numpy as np
import rclpy
import rclpy.signals
from audio_common_msgs.msg import AudioData, AudioDataStamped, AudioInfo
from hri_msgs.msg import LiveSpeech
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from stream_omni_ros.nodes.audio_common_conversions import float_to_wave_bytes
from stream_omni_ros.nodes.discovery import wait_discovered

RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
INFO_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
BRIDGE = "/audio_common_bridge"  # the node that must hear this one before it sends
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def say(line: str) -> None:
    """One line to the test."""
    print(line, flush=True)


def wait_for(condition) -> None:
    """Poll until the condition holds (the test's deadline ends a hang)."""
    while not condition():
        time.sleep(0.02)


def capture(node, files: list[str]) -> None:
    """Publish each file as AudioInfo + stamped chunks, as the capture node does."""
    info_pub = node.create_publisher(AudioInfo, "/audio/audio_info", INFO_QOS)
    audio_pub = node.create_publisher(AudioDataStamped, "/audio/audio_stamped", RELIABLE)
    wait_for(lambda: info_pub.get_subscription_count() and audio_pub.get_subscription_count())
    wait_for(lambda: wait_discovered(node, BRIDGE, 60.0))
    say("ready")
    for index in range(0, len(files), 4):
        if index:
            sys.stdin.readline()
        path, rate, fmt, coding = files[index], int(files[index + 1]), *files[index + 2:index + 4]
        samples = np.load(path)
        channels = samples.shape[1]
        info_pub.publish(AudioInfo(channels=channels, sample_rate=rate, sample_format=fmt,
                                   bitrate=rate * channels * 16, coding_format=coding))
        start = node.get_clock().now().nanoseconds
        step = rate // 50
        for first in range(0, len(samples), step):
            msg = AudioDataStamped()
            stamp = start + first * 10**9 // rate
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            msg.header.frame_id = "mic_link"
            msg.audio.data = float_to_wave_bytes(samples[first:first + step], fmt)
            audio_pub.publish(msg)
            time.sleep(0.01)
        say(f"sent {path}")


def listen(node, voice_topic: str, audio_file: str) -> None:
    """Print what the bridge publishes for audio_play and HRI listeners."""
    def audio(msg):
        with open(audio_file, "ab") as out:
            out.write(bytes(msg.data))
        say(json.dumps({"topic": "audio", "bytes": len(msg.data)}))

    def info(msg):
        say(json.dumps({"topic": "info", "channels": msg.channels, "rate": msg.sample_rate,
                        "format": msg.sample_format, "coding": msg.coding_format}))

    def speech(msg):
        say(json.dumps({"topic": "speech", "incremental": msg.incremental, "final": msg.final,
                        "confidence": msg.confidence, "language": msg.language}))
    subs = [node.create_subscription(AudioData, "/speech/audio", audio, RELIABLE),
            node.create_subscription(AudioInfo, "/speech/audio_info", info, LATCHED),
            node.create_subscription(LiveSpeech, voice_topic, speech, RELIABLE)]
    wait_for(lambda: all(sub.get_publisher_count() for sub in subs))
    wait_for(lambda: wait_discovered(node, BRIDGE, 60.0))
    say("ready")
    threading.Event().wait()


def main() -> None:
    """Run one role until the test ends the process."""
    # Ended by the test with SIGINT: leave at once, as a killed robot driver would.
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    rclpy.init(signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node("audio_common_peer")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    if sys.argv[1] == "capture":
        capture(node, sys.argv[2:])
        threading.Event().wait()
    else:
        listen(node, sys.argv[2], sys.argv[3])


if __name__ == "__main__":
    main()
