"""audio_common_bridge: the ROS audio and HRI standard messages <-> this package's topics.

* capture in: audio_common_msgs AudioDataStamped (or AudioData) + AudioInfo from audio_common's
  `audio_capture_node` -> AudioChunk on `audio/in` (rate, channels and S16LE/F32LE passed on
  as they are: the engine's audio front end resamples and downmixes);
* play out: `audio/out` -> AudioData (+ AudioDataStamped, AudioInfo) in the one fixed format
  audio_common's `audio_play_node` is configured for;
* LiveSpeech out: `asr/partial` and `asr/final` -> REP-155 hri_msgs/LiveSpeech on
  `/humans/voices/<voice_id>/speech`.

Each part runs when its interface package is importable and is skipped with one log line
otherwise, so the omni node itself never imports optional packages.
"""
from __future__ import annotations

import importlib
import os
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.time import Time
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from stream_omni_ros.config_fields import described
from stream_omni_ros.errors import ConfigError, InputError, InputReason
from stream_omni_ros.msg import AudioChunk, NodeState, Transcript
from stream_omni_ros.nodes.audio_common_conversions import (BYTES_PER_SAMPLE, MAX_SAMPLE_RATE,
                                                           MonoResampler, WaveFormat,
                                                           audio_info_to_wave_format,
                                                           float_to_wave_bytes,
                                                           transcript_to_live_speech,
                                                           voice_id_to_speech_topic,
                                                           wave_bytes_to_frames)
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.params import declare_config

DIAGNOSTIC_NAME = "stream_omni: audio_common_bridge"
RELIABLE = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
# audio_capture_node publishes AudioInfo with depth 1 (and again every 5 s).
INFO_IN_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
INFO_OUT_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
INFO_PERIOD_S = 5.0
PACE_PERIOD_S = 0.02
STATE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)
PARTS_OF = {"audio_common_msgs": "capture input and audio_play output",
            "hri_msgs": "LiveSpeech output"}


@dataclass(frozen=True)
class CaptureInputConfig:
    """audio_common capture -> audio/in."""

    enabled: bool = described(True, "forward audio_capture_node's audio to audio/in")
    audio_topic: str = described("/audio/audio_stamped", "the capture node's audio topic")
    stamped: bool = described(True, (
        "audio_topic carries AudioDataStamped; false: AudioData, stamped on arrival"))
    header_stamps: bool = described(False, (
        "keep AudioDataStamped header stamps (audio_capture_node stamps with the GStreamer "
        "pipeline clock, not ROS time); false: arrival time minus the chunk's duration"))
    info_topic: str = described("/audio/audio_info", "the capture node's AudioInfo topic")
    frame_id: str = described("", "frame_id for audio that carries none (unstamped AudioData)")
    max_chunk_bytes: int = described(1 << 20, "larger AudioData payloads are dropped",
                                     units="bytes")


@dataclass(frozen=True)
class PlayOutputConfig:
    """audio/out -> audio_common play."""

    enabled: bool = described(True, "mirror audio/out for audio_play_node")
    audio_topic: str = described("/speech/audio", "AudioData topic audio_play_node plays")
    stamped_topic: str = described("/speech/audio_stamped", "AudioDataStamped mirror topic")
    info_topic: str = described("/speech/audio_info", "AudioInfo of the mirror (latched)")
    sample_rate: int = described(16000, "rate of the mirror; audio_play_node's `sample_rate`",
                                 units="Hz")
    sample_format: str = described("S16LE", "S16LE or F32LE; audio_play_node's `sample_format`")
    lead_s: float = described(0.3, (
        "audio published ahead of real time: audio_play_node cannot drop what it has queued, "
        "so this bounds what it still plays after a barge-in"), units="s")
    barge_in: bool = described(True, "drop the queued answer when `state` says USER_SPEAKING")
    max_queue_s: float = described(300.0, "audio queued beyond this is dropped", units="s")

    def __post_init__(self) -> None:
        if not 1 <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ConfigError(f"play.sample_rate = {self.sample_rate}: expected "
                              f"1..{MAX_SAMPLE_RATE} Hz")
        if self.sample_format not in BYTES_PER_SAMPLE:
            raise ConfigError(f"play.sample_format = {self.sample_format!r}: expected one of "
                              f"{sorted(BYTES_PER_SAMPLE)}")
        if not 0.02 <= self.lead_s <= 10 or self.max_queue_s <= self.lead_s:
            raise ConfigError(f"play.lead_s = {self.lead_s}, play.max_queue_s = "
                              f"{self.max_queue_s}: expected 0.02 <= lead_s <= 10 and "
                              "lead_s < max_queue_s")


@dataclass(frozen=True)
class LiveSpeechConfig:
    """asr/* -> REP-155 LiveSpeech."""

    enabled: bool = described(True, "mirror the transcript as hri_msgs/LiveSpeech")
    voice_id: str = described("default", "REP-155 voice id: /humans/voices/<voice_id>/speech")
    language: str = described("en-US", "IETF language code in LiveSpeech.language")

    def __post_init__(self) -> None:
        voice_id_to_speech_topic(self.voice_id)


@dataclass(frozen=True)
class AudioCommonBridgeConfig:
    """The three parts of audio_common_bridge."""

    capture: CaptureInputConfig = field(default_factory=CaptureInputConfig)
    play: PlayOutputConfig = field(default_factory=PlayOutputConfig)
    live_speech: LiveSpeechConfig = field(default_factory=LiveSpeechConfig)


def import_interfaces(package: str, needed: tuple[str, ...]):
    """`<package>.msg` if it is installed and has the needed messages; else (None, why)."""
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError:
        distro = os.environ.get("ROS_DISTRO", "<distro>")
        return None, (f"{package} is not installed (apt install ros-{distro}-"
                      f"{package.replace('_', '-')})")
    missing = [name for name in needed if not hasattr(module, name)]
    if missing:
        return None, (f"the installed {package} lacks {missing}: not the released package "
                      "this bridge speaks (README: 'ROS audio and HRI standards')")
    return module, ""


class Reporter:
    """Counts per part and reason, logging each distinct error text once per part."""

    SOURCES = {"capture": "capture audio", "play": "audio/out chunk"}

    def __init__(self, node: Node) -> None:
        self._node = node
        self.counts: Counter[str] = Counter()
        self._last_error: dict[str, str] = {}  # per part

    def reject(self, err: InputError, part: str) -> None:
        """Count a dropped message as `<part>.dropped.<reason>`; log the error when new."""
        self.counts[f"{part}.dropped.{err.reason}"] += 1
        self.log_once(err, part)

    def log_once(self, err: InputError, part: str) -> None:
        """Log an error unless it is the one logged last for that part."""
        if str(err) != self._last_error.get(part):
            self._last_error[part] = str(err)
            self._node.get_logger().error(f"{self.SOURCES[part]} refused: {err}")

    def accept(self, what: str, part: str) -> None:
        """Count a message passed on as `<part>.<what>`; the part's next error is logged."""
        self.counts[f"{part}.{what}"] += 1
        self._last_error.pop(part, None)


class CaptureInput:
    """AudioInfo + AudioData(Stamped) -> AudioChunk on audio/in."""

    def __init__(self, node: Node, msgs, config: CaptureInputConfig, report: Reporter) -> None:
        self._node, self._config, self._report = node, config, report
        self._wave: WaveFormat | None = None
        self._info_error: InputError | None = InputError(
            f"no AudioInfo received yet on {config.info_topic}", reason=InputReason.NO_FORMAT)
        self._seq = 0
        self._pub = node.create_publisher(AudioChunk, "audio/in", RELIABLE)
        node.create_subscription(msgs.AudioInfo, config.info_topic, self._on_info, INFO_IN_QOS)
        audio_type = msgs.AudioDataStamped if config.stamped else msgs.AudioData
        node.create_subscription(audio_type, config.audio_topic, self._on_audio, RELIABLE)

    def _on_info(self, info) -> None:
        try:
            wave = audio_info_to_wave_format(info.coding_format, info.sample_format,
                                             info.channels, info.sample_rate)
        except InputError as err:
            self._report.log_once(err, "capture")
            self._wave, self._info_error = None, err
            return
        if wave != self._wave:
            self._node.get_logger().info(
                f"capture audio: {wave.sample_rate} Hz, {wave.channels} channel(s), "
                f"{wave.sample_format} from {self._config.audio_topic}")
        self._wave, self._info_error = wave, None

    def _on_audio(self, msg) -> None:
        data = bytes(msg.audio.data if self._config.stamped else msg.data)
        try:
            if self._wave is None:
                raise self._info_error
            frames = wave_bytes_to_frames(data, self._wave, self._config.max_chunk_bytes)
        except InputError as err:
            self._report.reject(err, "capture")
            return
        chunk = AudioChunk(sample_rate=self._wave.sample_rate, channels=self._wave.channels,
                           encoding=self._wave.sample_format, data=data, seq=self._seq)
        if self._config.stamped and self._config.header_stamps:
            chunk.header.stamp = msg.header.stamp
        else:  # the stamp of an AudioChunk is that of its first sample
            first_ns = self._node.get_clock().now().nanoseconds \
                - frames * 10**9 // self._wave.sample_rate
            chunk.header.stamp = Time(nanoseconds=max(0, first_ns)).to_msg()
        chunk.header.frame_id = (self._config.stamped and msg.header.frame_id) \
            or self._config.frame_id
        self._seq = (self._seq + 1) % 2**32
        self._pub.publish(chunk)
        self._report.accept("forwarded", "capture")


class PlayOutput:
    """AudioChunk on audio/out -> AudioData + AudioDataStamped (+ latched AudioInfo).

    Published at real-time pace, `lead_s` ahead, so a barge-in can still drop the rest.
    """

    def __init__(self, node: Node, msgs, config: PlayOutputConfig, report: Reporter) -> None:
        self._msgs, self._config, self._report = msgs, config, report
        self._resampler = MonoResampler(config.sample_rate)
        self._turn: int | None = None
        self._last_turn = 0
        self._flushed_turn: int | None = None
        self._queue: deque[tuple[np.ndarray, object]] = deque()
        self._queued_frames = 0
        self._ahead_until = 0.0  # monotonic time at which the published audio has played
        self._audio = node.create_publisher(msgs.AudioData, config.audio_topic, RELIABLE)
        self._stamped = node.create_publisher(msgs.AudioDataStamped, config.stamped_topic,
                                              RELIABLE)
        self._info = node.create_publisher(msgs.AudioInfo, config.info_topic, INFO_OUT_QOS)
        wave = WaveFormat(config.sample_rate, 1, config.sample_format)
        self._info_msg = msgs.AudioInfo(channels=1, sample_rate=wave.sample_rate,
                                        sample_format=wave.sample_format, bitrate=wave.bitrate,
                                        coding_format="wave")
        self.publish_info()
        node.create_timer(INFO_PERIOD_S, self.publish_info)
        node.create_subscription(AudioChunk, "audio/out", self._on_chunk, RELIABLE)
        node.create_subscription(NodeState, "state", self._on_state, STATE_QOS)
        node.create_timer(PACE_PERIOD_S, self._publish_due)
        self._logger = node.get_logger()

    def publish_info(self) -> None:
        """(Re)publish the mirror's format, as audio_capture_node does every 5 s."""
        self._info.publish(self._info_msg)

    def _on_chunk(self, chunk: AudioChunk) -> None:
        if chunk.turn_id and chunk.turn_id == self._flushed_turn:
            return
        self._last_turn = chunk.turn_id
        try:
            pcm = audio_msg_to_pcm(chunk)
        except InputError as err:
            self._report.reject(err, "play")
            return
        if self._turn is not None and chunk.turn_id != self._turn:
            self._enqueue(self._resampler.flush(), chunk.header)
        self._turn = chunk.turn_id
        samples = self._resampler.convert(pcm.samples, pcm.sample_rate)
        if chunk.is_final:
            samples = np.concatenate([samples, self._resampler.flush()])
            self._turn = None
        self._enqueue(samples, chunk.header)

    def _enqueue(self, samples: np.ndarray, header) -> None:
        if not len(samples):
            return
        if self._queued_frames + len(samples) > self._config.max_queue_s * self._rate:
            self._report.reject(InputError(
                f"the audio_play queue is full ({self._config.max_queue_s} s): expected speech "
                "no faster than it plays", reason=InputReason.QUEUE_FULL), "play")
            return
        self._queue.append((samples, header))
        self._queued_frames += len(samples)
        self._publish_due()

    @property
    def _rate(self) -> int:
        return self._config.sample_rate

    def _publish_due(self) -> None:
        """Publish queued audio while less than `lead_s` of it is still unplayed."""
        now = time.monotonic()
        while self._queue and self._ahead_until - now < self._config.lead_s:
            samples, header = self._queue.popleft()
            self._queued_frames -= len(samples)
            self._ahead_until = max(self._ahead_until, now) + len(samples) / self._rate
            self._publish(samples, header)

    def _on_state(self, msg: NodeState) -> None:
        if msg.state == NodeState.USER_SPEAKING and self._config.barge_in and self._queue:
            dropped = self._queued_frames / self._rate
            self._queue.clear()
            self._queued_frames = 0
            self._resampler.flush()
            self._turn, self._flushed_turn = None, self._last_turn or None
            self._report.counts["play.barge_in_flushes"] += 1
            self._logger.info(f"barge-in: dropped {dropped:.2f} s of turn {self._last_turn}")

    def _publish(self, samples: np.ndarray, header) -> None:
        data = float_to_wave_bytes(samples, self._config.sample_format)
        self._audio.publish(self._msgs.AudioData(data=data))
        stamped = self._msgs.AudioDataStamped(header=header)
        stamped.audio.data = data
        self._stamped.publish(stamped)
        self._report.accept("published", "play")


class LiveSpeechOutput:
    """asr/partial and asr/final -> hri_msgs/LiveSpeech (incremental, then final)."""

    def __init__(self, node: Node, msgs, config: LiveSpeechConfig, report: Reporter) -> None:
        self._msgs, self._config, self._report = msgs, config, report
        self.topic = voice_id_to_speech_topic(config.voice_id)
        self._last_final_turn = 0
        self._pub = node.create_publisher(msgs.LiveSpeech, self.topic, RELIABLE)
        for topic in ("asr/partial", "asr/final"):
            node.create_subscription(Transcript, topic, self._on_transcript, RELIABLE)

    def _on_transcript(self, msg: Transcript) -> None:
        # asr/partial and asr/final are two topics: a partial may be taken after its final.
        if msg.turn_id and msg.turn_id <= self._last_final_turn:
            return
        if msg.is_final:
            self._last_final_turn = msg.turn_id
        incremental, final = transcript_to_live_speech(msg.text, msg.is_final)
        # The model gives no calibrated confidence: a final result is reported as certain.
        self._pub.publish(self._msgs.LiveSpeech(
            header=msg.header, incremental=incremental, final=final,
            confidence=1.0 if msg.is_final else 0.0, language=self._config.language))
        self._report.accept("published", "live_speech")


class AudioCommonBridge(Node):
    """Runs the parts whose interface packages are installed; reports on /diagnostics."""

    def __init__(self) -> None:
        super().__init__("audio_common_bridge")
        config = declare_config(self, AudioCommonBridgeConfig)
        self.report = Reporter(self)
        self.parts: dict[str, str] = {}
        audio_msgs = self._interfaces("audio_common_msgs", ("AudioData", "AudioDataStamped",
                                                            "AudioInfo"),
                                      config.capture.enabled or config.play.enabled)
        hri_msgs = self._interfaces("hri_msgs", ("LiveSpeech",), config.live_speech.enabled)
        self._start("capture", config.capture.enabled, audio_msgs,
                    lambda msgs: CaptureInput(self, msgs, config.capture, self.report))
        self._start("play", config.play.enabled, audio_msgs,
                    lambda msgs: PlayOutput(self, msgs, config.play, self.report))
        self._start("live_speech", config.live_speech.enabled, hri_msgs,
                    lambda msgs: LiveSpeechOutput(self, msgs, config.live_speech, self.report))
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self._publish_diagnostics)
        self.get_logger().info("parts: " + "; ".join(f"{k} {v}" for k, v in self.parts.items()))

    def _interfaces(self, package: str, needed: tuple[str, ...], wanted: bool):
        """The package's msg module, or (logged once) the reason it cannot be used."""
        if not wanted:
            return "disabled"
        module, why = import_interfaces(package, needed)
        if module is None:
            self.get_logger().info(f"{why}: {PARTS_OF[package]} skipped")
            return f"no {package}"
        return module

    def _start(self, name: str, enabled: bool, msgs, make) -> None:
        if not enabled:
            self.parts[name] = "off (disabled)"
        elif isinstance(msgs, str):
            self.parts[name] = f"off ({msgs})"
        else:
            make(msgs)
            self.parts[name] = "on"

    def _publish_diagnostics(self) -> None:
        values = [KeyValue(key=f"part.{k}", value=v) for k, v in self.parts.items()]
        values += [KeyValue(key=k, value=str(v)) for k, v in sorted(self.report.counts.items())]
        dropped = sum(v for k, v in self.report.counts.items() if ".dropped." in k)
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if dropped else DiagnosticStatus.OK,
            name=DIAGNOSTIC_NAME, hardware_id=self.get_fully_qualified_name(),
            message=f"{dropped} message(s) dropped" if dropped else "ok",
            values=values)
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def main(args: list[str] | None = None) -> None:
    """Run the bridge until SIGINT/SIGTERM."""
    exit_process(spin_node(AudioCommonBridge, args))
