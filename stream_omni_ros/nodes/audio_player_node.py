"""audio_player_node: plays `audio/out` AudioChunks on a speaker (PortAudio via pyaudio).

Flushes queued speech on `~/stop_speaking` and, for barge-in, when `state` reports
USER_SPEAKING; chunks still arriving for a flushed turn are dropped. Publishes what it played on
`audio/played` (stamped when the first sample reaches the device: the echo canceller's
reference) and `robot_speaking` (std_msgs/Bool, latched) from the first played sample to the last.
With `simulated_speaker` there is no sound device: the speaker plays on the node clock and its
sound, silence included, goes out on `audio/speaker` (doc/architecture.md §5.2).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Bool
from std_srvs.srv import Trigger

from stream_omni_ros.errors import ConfigError, InputError
from stream_omni_ros.msg import AudioChunk, NodeState
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.params import LiveConfig
from stream_omni_ros.nodes.playback import Playback, PlaybackQueue
from stream_omni_ros.nodes.simulated_speaker import PERIOD_S, SimulatedSpeaker
from stream_omni_ros.nodes.sound_devices import OUTPUT, find_device, open_portaudio
from stream_omni_ros.nodes.stamps import seconds_to_time_msg


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
    simulated_speaker: bool = field(default=False, metadata={"description": (
        "no sound device: play on the node clock (sim time under use_sim_time) and publish "
        "the speaker's sound, silence included, on audio/speaker for a simulated room")})

    def __post_init__(self) -> None:
        if not 0 <= self.jitter_buffer_s <= 5:
            raise ConfigError(f"jitter_buffer_s = {self.jitter_buffer_s}: expected 0..5 s")
        if self.initial_sample_rate and not 4000 <= self.initial_sample_rate <= 384000:
            raise ConfigError(f"initial_sample_rate = {self.initial_sample_rate}: expected 0 "
                              "or 4000..384000 Hz")
        if self.max_queue_s <= self.jitter_buffer_s:
            raise ConfigError(f"max_queue_s = {self.max_queue_s}: expected > jitter_buffer_s")


class AudioPlayerNode(Node):
    """Subscribes to audio/out and state; plays the queue on a device or a simulated speaker."""

    def __init__(self) -> None:
        super().__init__("audio_player")
        self.live = LiveConfig(self, AudioPlayerConfig)
        config = self.live.value
        initial_fmt = (config.initial_sample_rate, 1) if config.initial_sample_rate else None
        self.played_seq = 0
        self.speaking = False  # what robot_speaking last said
        self.speaking_until: float | None = None  # speaker-clock time the last sample is heard
        self.speaking_lock = threading.Lock()
        reliable = QoSProfile(depth=500, reliability=ReliabilityPolicy.RELIABLE)
        self.played_pub = self.create_publisher(AudioChunk, "audio/played", reliable)
        self.speaking_pub = self.create_publisher(Bool, "robot_speaking", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._publish_speaking(False)
        self.create_timer(SPEAKING_POLL_S, self._check_speaking_end)
        if config.simulated_speaker:
            self._start_simulated(config, initial_fmt or (22050, 1), reliable)
        else:
            self._start_device(config, initial_fmt)
        self.last_turn = 0
        self.flushed_turn: int | None = None
        self.rejected = 0
        state_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                               durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(AudioChunk, "audio/out", self._on_chunk, reliable)
        self.create_subscription(NodeState, "state", self._on_state, state_qos)
        self.create_service(Trigger, "~/stop_speaking", self._on_stop_speaking)

    def _start_device(self, config: AudioPlayerConfig,
                      initial_fmt: tuple[int, int] | None) -> None:
        """A sound card: PortAudio's thread pulls the queue; its steady time ends speech."""
        self.audio = open_portaudio()
        try:
            device_index = find_device(self.audio, config.sound_device, OUTPUT)
        except ConfigError:
            self.audio.terminate()
            raise
        self.speaker_clock: Callable[[], float] = time.monotonic
        self.flush_tail_s = FLUSH_TAIL_S
        self.queue = PlaybackQueue(config.jitter_buffer_s, config.max_queue_s)
        self.playback = Playback(self.audio, device_index, self.queue, self.get_logger(),
                                 initial_fmt, self._on_device_played)

    def _start_simulated(self, config: AudioPlayerConfig, fmt: tuple[int, int],
                         reliable: QoSProfile) -> None:
        """The simulated speaker: a node-clock timer plays the queue, audio/speaker carries it."""
        self.audio = self.playback = None
        self.speaker_clock = self._now_s
        self.queue = PlaybackQueue(config.jitter_buffer_s, config.max_queue_s, self._now_s)
        self.sound_pub = self.create_publisher(AudioChunk, "audio/speaker", reliable)
        self.sound_seq = 0
        self.simulated = SimulatedSpeaker(self.queue, fmt, self._report_played, self._on_sound)
        self.flush_tail_s = self.simulated.latency_s
        # a timer on the node clock: under use_sim_time it ticks only as /clock advances
        self.create_timer(PERIOD_S, lambda: self.simulated.tick(self._now_s()))
        self.get_logger().info(f"simulated speaker: no sound device; it plays "
                               f"{PERIOD_S * 1000:.0f} ms ahead of the node clock, and its sound "
                               "goes out on audio/speaker")

    def _now_s(self) -> float:
        """Node-clock seconds (sim time under use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

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
        self.queue.put(pcm.samples, pcm.sample_rate, msg.is_final)

    def _on_device_played(self, frames: np.ndarray, rate: int, dac_delay_s: float,
                          playing: bool) -> None:
        """Device thread: the period just handed to the device reaches it in dac_delay_s."""
        self._report_played(frames, rate, self._now_s() + dac_delay_s, playing,
                            self.speaker_clock() + dac_delay_s)

    def _report_played(self, frames: np.ndarray, rate: int, stamp_s: float, playing: bool,
                       heard_at: float | None = None) -> None:
        """Publish a played period (stamp_s: node clock); follow the speaking span, which ends
        on the speaker's clock (heard_at: the period's start there, default stamp_s)."""
        self.played_pub.publish(pcm_to_audio_msg(
            frames.astype(np.float32) / 32768.0, rate, stamp=seconds_to_time_msg(stamp_s),
            turn_id=self.last_turn, seq=self.played_seq, is_final=not playing))
        self.played_seq += 1
        end = (stamp_s if heard_at is None else heard_at) + frames.shape[0] / rate
        with self.speaking_lock:
            self.speaking_until = None if playing else end
            start = not self.speaking
            self.speaking = True
        if start:
            self._publish_speaking(True)

    def _on_sound(self, frames: np.ndarray, rate: int, stamp_s: float) -> None:
        """The simulated speaker's sound since its last tick, silence included."""
        self.sound_pub.publish(pcm_to_audio_msg(
            frames.astype(np.float32) / 32768.0, rate, stamp=seconds_to_time_msg(stamp_s),
            seq=self.sound_seq))
        self.sound_seq += 1

    def _check_speaking_end(self) -> None:
        """robot_speaking goes false once the last played sample has reached the speaker."""
        with self.speaking_lock:
            end = self.speaking_until
            if not self.speaking or end is None or self.speaker_clock() < end:
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
        dropped = self.queue.flush()
        with self.speaking_lock:  # silenced: what the device still holds plays out
            if self.speaking and self.speaking_until is None:
                self.speaking_until = self.speaker_clock() + self.flush_tail_s
        self.get_logger().info(f"{reason}: flushed {dropped:.2f} s (turn {self.last_turn})")
        return dropped

    def destroy_node(self) -> None:
        """Stop playback before the node goes away."""
        if self.playback is not None:
            self.playback.close()
            self.audio.terminate()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the player node until interrupted."""
    exit_process(spin_node(AudioPlayerNode, args))
