"""audio_player_node: plays `audio/out` AudioChunks on a speaker (PortAudio via pyaudio).

Flushes queued speech on `~/stop_speaking` and, for barge-in, when `state` reports
USER_SPEAKING; chunks still arriving for a flushed turn are dropped. Publishes what it played on
`audio/played` (stamped when the first sample reaches the device: the echo canceller's
reference) and `robot_speaking` (std_msgs/Bool, latched) from the first played sample to the last.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.params import LiveConfig
from stream_omni_ros.nodes.playback import Playback
from stream_omni_ros.nodes.sound_devices import OUTPUT, find_device, open_portaudio


SPEAKING_POLL_S = 0.02  # how often the end of speech is checked for robot_speaking
FLUSH_TAIL_S = 0.1  # after a flush, about one device latency of audio is still heard


@dataclass(frozen=True)
class AudioPlayerConfig:
    """Speaker playback settings."""

    sound_device: str = field(default="", metadata={"description": (
        "output sound device: index (as a string) or a name substring; empty = the default")})
    jitter_buffer_s: float = field(default=0.1, metadata={
        "description": "audio queued before playback starts (absorbs network jitter) [s]"})
    initial_sample_rate: int = field(default=22050, metadata={"description": (
        "rate [Hz] of the mono stream opened at start-up, so the first speech does not wait "
        "for the device to start (CosyVoice speaks at 22050 Hz); 0 = open with the first chunk")})
    max_queue_s: float = field(default=120.0, metadata={
        "description": "queued audio beyond this is dropped [s]"})
    barge_in: bool = field(default=True, metadata={
        "runtime_safe": True, "description": "flush when state says USER_SPEAKING"})

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_buffer_s <= 5:
            raise ConfigError(f"jitter_buffer_s = {self.jitter_buffer_s}: expected 0..5 s")
        if self.initial_sample_rate and not 4000 <= self.initial_sample_rate <= 384000:
            raise ConfigError(f"initial_sample_rate = {self.initial_sample_rate}: expected 0 "
                              "or 4000..384000 Hz")
        if self.max_queue_s <= self.jitter_buffer_s:
            raise ConfigError(f"max_queue_s = {self.max_queue_s}: expected > jitter_buffer_s")


class AudioPlayerNode(Node):
    """Subscribes to audio/out and state; plays through a Playback writer thread."""

    def __init__(self) -> None:
        super().__init__("audio_player")
        self.live = LiveConfig(self, AudioPlayerConfig)
        config = self.live.value
        self.audio = open_portaudio()
        try:
            device_index = find_device(self.audio, config.sound_device, OUTPUT)
        except ConfigError:
            self.audio.terminate()
            raise
        initial_fmt = (config.initial_sample_rate, 1) if config.initial_sample_rate else None
        self.played_seq = 0
        self.speaking = False  # what robot_speaking last said
        self.speaking_until: float | None = None  # monotonic time the last sample is heard
        self.speaking_lock = threading.Lock()
        self.played_pub = self.create_publisher(
            AudioChunk, "audio/played", QoSProfile(depth=500,
                                                   reliability=ReliabilityPolicy.RELIABLE))
        self.speaking_pub = self.create_publisher(Bool, "robot_speaking", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._publish_speaking(False)
        self.create_timer(SPEAKING_POLL_S, self._check_speaking_end)
        self.playback = Playback(self.audio, device_index, config.jitter_buffer_s,
                                 config.max_queue_s, self.get_logger(), initial_fmt,
                                 self._on_played)
        self.last_turn = 0
        self.flushed_turn: int | None = None
        self.rejected = 0
        audio_qos = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        state_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(AudioChunk, "audio/out", self._on_chunk, audio_qos)
        self.create_subscription(NodeState, "state", self._on_state, state_qos)
        self.create_service(Trigger, "~/stop_speaking", self._on_stop_speaking)

    def _on_chunk(self, msg: AudioChunk) -> None:
        if msg.turn_id != 0 and msg.turn_id == self.flushed_turn:
            return
        try:
            pcm = audio_msg_to_pcm(msg)
        except InputError as err:
            self.rejected += 1
            self.get_logger().warning(f"dropped AudioChunk: {err}")
            return
        self.last_turn = msg.turn_id
        self.playback.put(pcm.samples, pcm.sample_rate, msg.is_final)

    def _on_played(self, frames: np.ndarray, rate: int, dac_delay_s: float,
                   playing: bool) -> None:
        """Device thread: report the period just handed to the device, and speaking spans."""
        stamp = self.get_clock().now() + Duration(nanoseconds=int(dac_delay_s * 1e9))
        self.played_pub.publish(pcm_to_audio_msg(
            frames.astype(np.float32) / 32768.0, rate, stamp=stamp.to_msg(),
            turn_id=self.last_turn, seq=self.played_seq, is_final=not playing))
        self.played_seq += 1
        end = time.monotonic() + dac_delay_s + frames.shape[0] / rate
        with self.speaking_lock:
            self.speaking_until = None if playing else end
            start = not self.speaking
            self.speaking = True
        if start:
            self._publish_speaking(True)

    def _check_speaking_end(self) -> None:
        """robot_speaking goes false once the last played sample has reached the speaker."""
        with self.speaking_lock:
            end = self.speaking_until
            if not self.speaking or end is None or time.monotonic() < end:
                return
            self.speaking, self.speaking_until = False, None
        self._publish_speaking(False)

    def _publish_speaking(self, speaking: bool) -> None:
        self.speaking_pub.publish(Bool(data=speaking))

    def _on_state(self, msg: NodeState) -> None:
        if msg.state == NodeState.USER_SPEAKING and self.live.value.barge_in:
            self.flush("barge-in")

    def _on_stop_speaking(self, _request: Trigger.Request,
                          response: Trigger.Response) -> Trigger.Response:
        response.message = f"dropped {self.flush('stop_speaking'):.2f} s of queued audio"
        response.success = True
        return response

    def flush(self, reason: str) -> float:
        """Silence the speaker, ignore the rest of the current turn; return seconds dropped."""
        self.flushed_turn = self.last_turn or None
        dropped = self.playback.flush()
        with self.speaking_lock:  # silenced: what the device still holds plays out
            if self.speaking and self.speaking_until is None:
                self.speaking_until = time.monotonic() + FLUSH_TAIL_S
        self.get_logger().info(f"{reason}: flushed {dropped:.2f} s (turn {self.last_turn})")
        return dropped

    def destroy_node(self) -> None:
        """Stop playback before the node goes away."""
        self.playback.close()
        self.audio.terminate()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the player node until interrupted."""
    exit_process(spin_node(AudioPlayerNode, args))
