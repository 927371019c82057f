"""Settings of the omni_node itself (ROS side); engine and model settings live in engine/."""
from __future__ import annotations

from dataclasses import dataclass, field

from stream_omni_ros.errors import ConfigError

AUDIO_OUT_ENCODINGS = ("F32LE", "S16LE")
# Engine settings a user may change while the node runs (parameter callback -> reconfigure).
RUNTIME_SAFE_ENGINE_FIELDS = (
    "conversation.system_prompt", "conversation.speak", "conversation.use_camera",
    "vad.threshold", "listen.mode", "listen.barge_in", "listen.half_duplex", "image.max_age_s")


@dataclass(frozen=True)
class ImageInputConfig:
    """Camera input: message type and the most frames per second that are decoded."""

    compressed: bool = False  # subscribe sensor_msgs/CompressedImage instead of Image
    # Frames beyond this sustained rate are dropped (and counted) before any decoding work.
    max_rate_hz: float = 30.0

    def __post_init__(self) -> None:
        if self.max_rate_hz <= 0:
            raise ConfigError(f"image.max_rate_hz = {self.max_rate_hz}; expected > 0")


@dataclass(frozen=True)
class AudioOutputConfig:
    """Speech output chunks on audio/out."""

    encoding: str = "F32LE"
    frame_id: str = "speaker"

    def __post_init__(self) -> None:
        if self.encoding not in AUDIO_OUT_ENCODINGS:
            raise ConfigError(f"audio_out.encoding = {self.encoding!r}; expected one of "
                              f"{AUDIO_OUT_ENCODINGS}")


@dataclass(frozen=True)
class OmniNodeConfig:
    """Lifecycle, input, output and reporting settings of omni_node."""

    autostart: bool = True  # configure + activate at start, so `ros2 run` just works
    image: ImageInputConfig = field(default_factory=ImageInputConfig)
    audio_out: AudioOutputConfig = field(default_factory=AudioOutputConfig)
    diagnostics_period_s: float = 1.0
    state_period_s: float = 0.05
    log_throttle_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("diagnostics_period_s", "state_period_s", "log_throttle_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} = {getattr(self, name)}; expected > 0")
