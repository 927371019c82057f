"""audio_capture_node: a microphone (PortAudio via pyaudio) published as S16LE AudioChunks.

Each chunk's stamp is the node-clock time of its first sample. Stamps advance by the sample
count, so they do not jitter with callback scheduling (see SampleClock). Under use_sim_time the
node clock reads 0 until the first /clock message: audio captured before then has no time, so it
is dropped (logged once) rather than stamped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyaudio
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.params import declare_config
from stream_omni_ros.nodes.sound_devices import INPUT, find_device, open_portaudio

RESYNC_S = 0.1  # sound servers deliver in bursts of tens of ms: that is not lost audio
MAX_SLEW = 0.05
# PortAudio's capture-time estimate is trusted only when it is this plausible.
MAX_DRIVER_LATENCY_S = 1.0


@dataclass(frozen=True)
class AudioCaptureConfig:
    """Microphone capture settings."""

    sound_device: str = field(default="", metadata={"description": (
        "input sound device: index (as a string) or a name substring; empty = the default")})
    sample_rate: int = field(default=16000, metadata={"description": "capture rate [Hz]"})
    channels: int = field(default=1, metadata={"description": "interleaved channels"})
    chunk_s: float = field(default=0.02, metadata={"description": "chunk duration [s]"})
    frame_id: str = field(default="microphone", metadata={"description": "header.frame_id"})

    def __post_init__(self) -> None:
        if not 4000 <= self.sample_rate <= 384000:
            raise ConfigError(f"sample_rate = {self.sample_rate}: expected 4000..384000 Hz")
        if not 1 <= self.channels <= 32:
            raise ConfigError(f"channels = {self.channels}: expected 1..32")
        if not 0.001 <= self.chunk_s <= 1.0:
            raise ConfigError(f"chunk_s = {self.chunk_s}: expected 0.001..1.0 s")

    @property
    def chunk_frames(self) -> int:
        """Frames per chunk."""
        return max(1, round(self.chunk_s * self.sample_rate))


class SampleClock:
    """Node-clock stamps of chunk starts that advance by sample count, corrected on drift.

    A measurement (arrival time - chunk duration - driver latency) can only be late, never
    early. So when a chunk proves it was captured earlier than its stamp (after a start-up
    burst of buffered chunks, or a sound card running fast) the stamps slew back by at most
    MAX_SLEW of a chunk per chunk, which keeps them increasing; when they lag by more than
    RESYNC_S (lost audio, a slow card, a sim-time jump) they jump forward to the measurement.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.anchor_ns: int | None = None
        self.frames_since_anchor = 0
        self.resyncs = 0

    def stamp_ns(self, measured_ns: int, frames: int) -> int:
        """Stamp of a chunk whose first sample was measured at `measured_ns`; then advance."""
        if self.anchor_ns is None:
            self.anchor_ns = measured_ns
        predicted = self.anchor_ns + self.frames_since_anchor * 10**9 // self.sample_rate
        if measured_ns - predicted > RESYNC_S * 1e9:
            self.resyncs += 1
            self.anchor_ns, self.frames_since_anchor, predicted = measured_ns, 0, measured_ns
        elif measured_ns < predicted:
            slew = min(predicted - measured_ns, int(MAX_SLEW * frames * 1e9 / self.sample_rate))
            self.anchor_ns -= slew
            predicted -= slew
        self.frames_since_anchor += frames
        return predicted


class AudioCaptureNode(Node):
    """Publishes the microphone on `audio/in` from PortAudio's callback thread."""

    def __init__(self) -> None:
        super().__init__("audio_capture")
        self.config = declare_config(self, AudioCaptureConfig)
        self.overflows = 0
        self.seq = 0
        self.waiting_for_clock = False
        self.clock = SampleClock(self.config.sample_rate)
        depth = max(100, math.ceil(2.0 / self.config.chunk_s))
        qos = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(AudioChunk, "audio/in", qos)
        self.audio = open_portaudio()
        try:
            self.stream = self._open_stream()
        except BaseException:
            self.audio.terminate()
            raise
        device = self.config.sound_device or "(default)"
        self.get_logger().info(
            f"capturing {self.config.sample_rate} Hz x {self.config.channels} from device "
            f"{device} in {self.config.chunk_frames}-frame chunks")

    def _open_stream(self) -> pyaudio.Stream:
        index = find_device(self.audio, self.config.sound_device, INPUT)
        try:
            return self.audio.open(
                format=pyaudio.paInt16, channels=self.config.channels,
                rate=self.config.sample_rate, input=True, input_device_index=index,
                frames_per_buffer=self.config.chunk_frames, stream_callback=self._on_audio)
        except OSError as err:
            raise ConfigError(
                f"cannot open input device {self.config.sound_device or '(default)'} at "
                f"{self.config.sample_rate} Hz x {self.config.channels} ch: {err}") from err

    def _first_sample_ns(self, now_ns: int, frames: int, time_info: dict) -> int:
        age_s = time_info.get("current_time", 0) - time_info.get("input_buffer_adc_time", 0)
        if not (time_info.get("input_buffer_adc_time", 0) > 0
                and 0 <= age_s < MAX_DRIVER_LATENCY_S):
            age_s = frames / self.config.sample_rate  # the chunk just ended
        # A simulation clock that just started may be younger than the audio: never negative.
        return self.clock.stamp_ns(max(0, now_ns - int(age_s * 1e9)), frames)

    def _clock_running(self, now_ns: int) -> bool:
        """False (logged once per wait) while the node clock has not started (sim time 0)."""
        if now_ns > 0:
            if self.waiting_for_clock:
                self.get_logger().info("the clock started: publishing the microphone")
            self.waiting_for_clock = False
            return True
        if not self.waiting_for_clock:
            self.get_logger().warning(
                "the node clock reads 0 (use_sim_time with no /clock yet, or a simulator not "
                "started): dropping microphone audio until the clock runs")
        self.waiting_for_clock = True
        return False

    def _on_audio(self, in_data: bytes, frames: int, time_info: dict, status: int):
        if not self.context.ok():
            return None, pyaudio.paComplete
        if status & pyaudio.paInputOverflow:
            self.overflows += 1
            self.get_logger().warning("microphone overflow: audio was lost",
                                      throttle_duration_sec=5.0)
        now_ns = self.get_clock().now().nanoseconds
        if not self._clock_running(now_ns):
            return None, pyaudio.paContinue
        msg = AudioChunk(sample_rate=self.config.sample_rate, channels=self.config.channels,
                         encoding=AudioChunk.ENCODING_S16LE, seq=self.seq)
        stamp_ns = self._first_sample_ns(now_ns, frames, time_info)
        msg.header.stamp = Time(nanoseconds=stamp_ns).to_msg()
        msg.header.frame_id = self.config.frame_id
        msg.data = in_data
        self.pub.publish(msg)
        self.seq += 1
        return None, pyaudio.paContinue

    def destroy_node(self) -> None:
        """Stop the microphone before the node goes away."""
        self.stream.close()  # aborts: Pa_StopStream would wait for a buffer to fill
        self.audio.terminate()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    """Run the capture node until interrupted."""
    exit_process(spin_node(AudioCaptureNode, args))
