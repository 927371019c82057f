"""omni_node input callbacks: audio/in and image messages -> engine; bad ones counted, dropped."""
from __future__ import annotations

import time
from typing import Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.errors import InputError, InputReason
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.conversions import compressed_image_msg_to_rgb, image_msg_to_rgb
from stream_omni_ros.nodes.omni_config import OmniNodeConfig
from stream_omni_ros.nodes.omni_diagnostics import InputCounters, lost_message_counter
from stream_omni_ros.nodes.stamps import time_msg_to_seconds

# 10 s of 10 ms chunks: audio replayed faster than real time (a bag at 4x, an unpaced file)
# queues here and is processed in full, in order; it is never dropped as a flood.
AUDIO_IN_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
IMAGE_BURST_S = 0.5  # a burst of this many seconds of frames at max_rate_hz passes whole
IMAGE_QOS = QoSProfile(depth=1, reliability=qos_profile_sensor_data.reliability,
                       durability=qos_profile_sensor_data.durability)
# Diagnostics names of the inputs. A reader matches a writer later than the writer matches it,
# and a volatile reader never gets what was sent before: its own count is what shows that a
# microphone or camera can be heard (README "Diagnostics").
INPUT_NAMES = ("audio_in", "audio_played", "image")


def audio_msg_to_pcm_chunk(msg: AudioChunk) -> PcmChunk:
    """AudioChunk -> the engine's PcmChunk (a zero stamp means the source has no clock)."""
    stamp = time_msg_to_seconds(msg.header.stamp)
    return PcmChunk(bytes(msg.data), int(msg.sample_rate), int(msg.channels), msg.encoding,
                    stamp if stamp > 0 else None, int(msg.seq), msg.header.frame_id)


class InputAdapter:
    """Subscription callbacks of an active omni_node (a few lines each; the engine works)."""

    def __init__(self, node: Node, engine: ConversationEngine, config: OmniNodeConfig,
                 counters: InputCounters, on_heard: Callable[[], None]) -> None:
        self._node, self._engine, self._config = node, engine, config
        self._counters = counters
        self._on_heard = on_heard  # publishes a state the chunk changed (barge-in, endpoint)
        self._last_log: dict[str, float] = {}
        self._last_image: float | None = None  # stamp of the previous frame
        self._image_tokens = 0.0
        image_type = CompressedImage if config.image.compressed else Image
        image_callback = self.on_compressed_image if config.image.compressed else self.on_image
        self.subscriptions = [  # audio/in, audio/played, image: the order of INPUT_NAMES
            node.create_subscription(
                AudioChunk, "audio/in", self.on_audio, AUDIO_IN_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=lost_message_counter(counters, "audio")),
            # what the speaker played, stamped when it reached the device: the echo reference
            node.create_subscription(
                AudioChunk, "audio/played", self.on_played, AUDIO_IN_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=lost_message_counter(counters, "played")),
            node.create_subscription(
                image_type, "image", image_callback, IMAGE_QOS,
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=lost_message_counter(counters, "image"))]
        # Steady time: a microphone that died stalls the utterance whatever the node clock does.
        self._watchdog = node.create_timer(
            config.state_period_s, self._check_watchdog,
            MutuallyExclusiveCallbackGroup(), Clock(clock_type=ClockType.STEADY_TIME))

    def publisher_counts(self) -> dict[str, int]:
        """How many publishers each input has matched, as this node's readers see them."""
        return {name: subscription.get_publisher_count()
                for name, subscription in zip(INPUT_NAMES, self.subscriptions)}

    def destroy(self) -> None:
        """Stop listening: destroy the subscriptions and the watchdog (on deactivate)."""
        for subscription in self.subscriptions:
            self._node.destroy_subscription(subscription)
        self.subscriptions.clear()
        self._node.destroy_timer(self._watchdog)
        # The executor may keep the last callbacks it waited on after they are destroyed; with
        # no engine behind them they cannot keep the model alive past cleanup.
        self._engine = None

    def _check_watchdog(self) -> None:
        if self._engine is not None:
            self._engine.check_audio_watchdog()

    def on_audio(self, msg: AudioChunk) -> None:
        """Hand a microphone chunk to the engine (listening, VAD and turn-taking run there)."""
        engine = self._engine
        if engine is None:  # destroyed: a callback the executor still held
            return
        try:
            heard = engine.feed_audio(audio_msg_to_pcm_chunk(msg))
        except InputError as error:
            self._reject("audio", error)
            return
        # the state first: whoever sees the chunk counted has been sent the state it caused,
        # and the player's barge-in flush does not wait for the next state_period_s
        self._on_heard()
        self._count_audio(msg, heard)

    def _count_audio(self, msg: AudioChunk, heard: bool) -> None:
        if not heard:
            self._counters.add("audio.ignored.not_listening")
            return
        self._counters.add("audio.accepted")
        if msg.sample_rate != MODEL_SAMPLE_RATE or msg.channels != 1:
            key = f"audio.converted.{msg.sample_rate}hz_{msg.channels}ch"
            if self._counters.add(key) == 1:
                self._node.get_logger().info(
                    f"audio/in: converting {msg.sample_rate} Hz x {msg.channels} channel "
                    f"chunks to {MODEL_SAMPLE_RATE} Hz mono")

    def on_played(self, msg: AudioChunk) -> None:
        """Hand a chunk the speaker played to the engine's echo canceller."""
        if self._engine is None:  # destroyed: a callback the executor still held
            return
        try:
            self._engine.feed_played(audio_msg_to_pcm_chunk(msg), last=msg.is_final)
        except InputError as error:
            self._reject("played", error.reason, error)
            return
        self._counters.add("played.accepted")

    def on_image(self, msg: Image) -> None:
        """Decode a camera frame and hand it to the engine with its stamp and frame."""
        self._on_frame(msg, image_msg_to_rgb)

    def on_compressed_image(self, msg: CompressedImage) -> None:
        """Decode a compressed camera frame and hand it to the engine."""
        self._on_frame(msg, compressed_image_msg_to_rgb)

    def _on_frame(self, msg: Image | CompressedImage, msg_to_rgb) -> None:
        stamp = self._frame_stamp(msg.header)
        engine = self._engine
        if engine is None or self._flooded(stamp):
            return
        try:
            engine.feed_image(msg_to_rgb(msg, self._config.image.max_pixels), stamp,
                              msg.header.frame_id)
        except InputError as error:
            self._reject("image", error)
            return
        self._counters.add("image.accepted")

    def _frame_stamp(self, header) -> float:
        """The frame's capture time; an unstamped frame is taken as captured now."""
        stamp = time_msg_to_seconds(header.stamp)
        return stamp if stamp > 0 else self._node.get_clock().now().nanoseconds * 1e-9

    def _flooded(self, stamp: float) -> bool:
        """True (and counted) when frames are stamped faster than image.max_rate_hz a while."""
        # A token bucket over the frames' own stamps: camera jitter passes, a sustained flood
        # is cut to max_rate_hz before any decoding, and the same frames pass whatever the
        # delivery speed (a bag replayed at 4x, a loaded machine delivering in bursts).
        rate = self._config.image.max_rate_hz
        capacity = max(1.0, rate * IMAGE_BURST_S)
        elapsed = capacity / rate if self._last_image is None else stamp - self._last_image
        self._image_tokens = min(capacity, self._image_tokens + max(0.0, elapsed) * rate)
        self._last_image = stamp
        if self._image_tokens < 1.0:
            self._reject("image", InputError(
                f"images arrive faster than image.max_rate_hz = {rate}", InputReason.RATE_LIMIT))
            return True
        self._image_tokens -= 1.0
        return False

    def _reject(self, source: str, error: InputError) -> None:
        reason = error.reason
        count = self._counters.add(f"{source}.dropped.{reason}")
        key, now = f"{source}.{reason}", time.monotonic()
        if now - self._last_log.get(key, -float("inf")) >= self._config.log_throttle_s:
            self._last_log[key] = now
            self._node.get_logger().warning(
                f"dropped {source} message ({reason}, {count} so far): {error}")
