"""audio_player_node: plays `audio/out` AudioChunks on a speaker (PortAudio via pyaudio).

Flushes queued speech on `~/stop_speaking` and, for barge-in, when `state` reports
USER_SPEAKING; chunks still arriving for a flushed turn are dropped. Publishes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import Trigger

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.params import LiveConfig
from stream_omni_ros.nodes.playback import Playback
from stream_omni_ros.nodes.sound_devices import OUTPUT, find_device, open_portaudio


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
        self.playback = Playback(self.audio, device_index, config.jitter_buffer_s,
                                 config.max_queue_s, self.get_logger(), initial_fmt)
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
