"""wav_source_node: publishes WAV files as AudioChunks on `audio/in`, paced by the node clock.

Pacing by the node clock (a timer) means Gazebo's /clock drives it when use_sim_time is true, so
spoken scenarios run in simulation and in CI without a sound card.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.discovery import DiscoveryProbe
from stream_omni_ros.nodes.node_process import exit_process, spin_node

# A subscriber node that never answers get_parameters (no parameter services, not rclpy) is
# not waited for longer than this before the stream starts.
DISCOVERY_WAIT_S = 5.0


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Read a sound file as float32 [frames, channels] and its sample rate."""
    if not Path(path).is_file():
        raise ConfigError(f"wav_source: file {path!r} in parameter 'files' does not exist")
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except RuntimeError as error:  # soundfile.LibsndfileError
        raise ConfigError(f"wav_source: {path!r} is not a readable sound file: {error}") \
            from error
    return samples, int(rate)


class WavSourceNode(Node):
    """Plays a list of sound files as an audio/in stream with silence between them."""

    def __init__(self) -> None:
        super().__init__("wav_source")
        self.files = list(self.declare_parameter("files", [""]).value)
        self.chunk_s = float(self.declare_parameter("chunk_s", 0.02).value)
        self.gap_s = float(self.declare_parameter("gap_s", 1.0).value)
        self.loop = bool(self.declare_parameter("loop", False).value)
        self.encoding = str(self.declare_parameter("encoding", "S16LE").value)
        self.frame_id = str(self.declare_parameter("frame_id", "microphone").value)
        self.wait_for_subscribers = bool(
            self.declare_parameter("wait_for_subscribers", True).value)
        self.clips = [read_wav(f) for f in self.files if f]
        if not self.clips:
            raise ConfigError("wav_source: parameter 'files' names no sound file; expected a "
                              "list of WAV (or other libsndfile) paths")
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(AudioChunk, "audio/in", qos)
        self.stream = self._chunks()
        self.seq = 0
        self.stream_start: Time | None = None
        self.sent_s = 0.0  # seconds of audio published so far
        self.done = False
        self._probes: dict[str, DiscoveryProbe] | None = None  # subscriber node -> probe
        self._probes_until = 0.0
        self.timer = self.create_timer(self.chunk_s, self._tick)

    def _chunks(self):
        """Yield (samples, rate) chunks of every clip followed by a silence gap."""
        while True:
            for samples, rate in self.clips:
                step = max(1, int(round(self.chunk_s * rate)))
                padded = np.concatenate(
                    [samples, np.zeros((int(self.gap_s * rate), samples.shape[1]), np.float32)])
                for start in range(0, padded.shape[0], step):
                    yield padded[start:start + step], rate
            if not self.loop:
                return

    def _tick(self) -> None:
        if self.wait_for_subscribers and self.pub.get_subscription_count() == 0:
            return
        if self.wait_for_subscribers and self.stream_start is None and not self._heard():
            return
        now = self.get_clock().now()
        if self.stream_start is None:
            self.stream_start = now
        # Late ticks (a loaded executor, a jumpy sim clock) are caught up: the audio keeps the
        # clock's pace instead of the timer's.
        elapsed_s = (now - self.stream_start).nanoseconds * 1e-9
        while self.sent_s <= elapsed_s:
            chunk = next(self.stream, None)
            if chunk is None:
                self.timer.cancel()
                # the last chunks reach every subscriber before the writer goes away
                self.pub.wait_for_all_acked(Duration(seconds=10))
                self.done = True
                self.get_logger().info(f"finished: {self.seq} chunks published")
                return
            self._publish(*chunk)

    def _heard(self) -> bool:
        """True once every subscriber node has discovered this publisher (its first chunks
        would be lost otherwise, doc/architecture.md 5.1), or DISCOVERY_WAIT_S passed."""
        if self._probes is None:
            infos = self.get_subscriptions_info_by_topic(self.pub.topic_name)
            names = {f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos}
            self._probes = {name: DiscoveryProbe(self, name) for name in sorted(names)}
            self._probes_until = time.monotonic() + DISCOVERY_WAIT_S
        silent = [name for name, probe in self._probes.items() if not probe.answered()]
        if silent and time.monotonic() < self._probes_until:
            return False
        if silent:
            self.get_logger().warning(f"{', '.join(silent)} did not answer get_parameters "
                                      f"within {DISCOVERY_WAIT_S} s; starting anyway (the "
                                      "first chunks may not reach them)")
        for probe in self._probes.values():
            probe.close()
        self._probes = {}
        return True

    def _publish(self, samples: np.ndarray, rate: int) -> None:
        first_sample = self.stream_start + Duration(nanoseconds=int(self.sent_s * 1e9))
        self.pub.publish(pcm_to_audio_msg(samples, rate, encoding=self.encoding,
                                          stamp=first_sample.to_msg(), frame_id=self.frame_id,
                                          seq=self.seq))
        self.seq += 1
        self.sent_s += samples.shape[0] / rate


def main(args: list[str] | None = None) -> None:
    """Run the node until every file is published (or forever with loop:=true)."""
    exit_process(spin_node(WavSourceNode, args, done=lambda node: node.done))
