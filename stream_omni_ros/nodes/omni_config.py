"""Settings of the omni_node itself (ROS side); engine and model settings live in engine/."""
from __future__ import annotations

from dataclasses import dataclass

from stream_omni_ros.config_fields import described, described_factory
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.nodes.conversions import DEFAULT_MAX_PIXELS

AUDIO_OUT_ENCODINGS = ("F32LE", "S16LE")
# Engine settings a user may change while the node runs (parameter callback -> reconfigure).
RUNTIME_SAFE_ENGINE_FIELDS = (
    "conversation.system_prompt", "conversation.speak", "conversation.use_camera",
    "vad.threshold", "listen.mode", "listen.barge_in", "listen.half_duplex",
    "listen.late_audio_wait_s", "echo.cancel", "echo.without_reference", "image.max_age_s",
    "image.frame_at")


@dataclass(frozen=True)
class ImageInputConfig:
    """Camera input: message type and the most frames per second that are decoded."""

    compressed: bool = described(
        False, "subscribe sensor_msgs/CompressedImage instead of sensor_msgs/Image")
    # Frames beyond this sustained rate are dropped (and counted) before any decoding work. The
    # rate is measured on the frames' stamps, so delivery speed (a bag at 4x) changes nothing.
    max_rate_hz: float = described(
        30.0, "most camera frames decoded per second of their stamps; a sustained excess is "
        "dropped", units="Hz")
    # Checked from the message fields or the JPEG/PNG header before decoding (no pixel bombs).
    max_pixels: int = described(
        DEFAULT_MAX_PIXELS, "largest camera frame (width x height) decoded; larger frames "
        "are dropped before decoding")

    def __post_init__(self) -> None:
        if self.max_rate_hz <= 0:
            raise ConfigError(f"image.max_rate_hz = {self.max_rate_hz}; expected > 0")
        if self.max_pixels < 1:
            raise ConfigError(f"image.max_pixels = {self.max_pixels}; expected >= 1")


@dataclass(frozen=True)
class AudioOutputConfig:
    """Speech output chunks on audio/out."""

    encoding: str = described("F32LE", "sample format of audio/out chunks: F32LE or S16LE")
    frame_id: str = described("speaker", "header.frame_id of audio/out chunks")

    def __post_init__(self) -> None:
        if self.encoding not in AUDIO_OUT_ENCODINGS:
            raise ConfigError(f"audio_out.encoding = {self.encoding!r}; expected one of "
                              f"{AUDIO_OUT_ENCODINGS}")


@dataclass(frozen=True)
class OmniNodeConfig:
    """Lifecycle, input, output and reporting settings of omni_node."""

    # Configure + activate at start, so `ros2 run` just works without a lifecycle manager.
    autostart: bool = described(
        True, "configure and activate the lifecycle node at start; false: wait for a manager")
    image: ImageInputConfig = described_factory(ImageInputConfig, "camera input")
    audio_out: AudioOutputConfig = described_factory(AudioOutputConfig, "speech output")
    diagnostics_period_s: float = described(
        1.0, "period of the /diagnostics status message", units="s")
    state_period_s: float = described(
        0.05, "period of the node state message on the state topic", units="s")
    log_throttle_s: float = described(
        5.0, "shortest time between two log lines of one kind of warning or error", units="s")

    def __post_init__(self) -> None:
        for name in ("diagnostics_period_s", "state_period_s", "log_throttle_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} = {getattr(self, name)}; expected > 0")
