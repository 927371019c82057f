"""Configuration of the conversation engine: one frozen dataclass per component.

Every default is written here and only here. Fields are plain scalars, strings or booleans so that
the ROS layer can expose each one as a parameter named ``group.field``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from stream_omni_ros.errors import ConfigError

LISTEN_MODES = ("always", "on_request", "push_to_talk")
RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


def _require(condition: bool, group: str, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{group}.{name} = {value!r} is invalid; expected {expected}")


@dataclass(frozen=True)
class AudioInputConfig:
    """Microphone chunk conversion to 16 kHz mono: accepted rates, gap and clipping detection."""

    min_sample_rate: int = 4000
    max_sample_rate: int = 384000
    max_channels: int = 32
    resample_quality: str = "HQ"
    # Stamps from a driver jitter by a few ms; only larger holes count as lost audio.
    gap_tolerance_s: float = 0.02
    # Lost audio is replaced by silence up to this length so utterance times stay aligned.
    max_gap_fill_s: float = 1.0
    clip_warning_fraction: float = 0.01

    def __post_init__(self) -> None:
        g = "audio"
        _require(0 < self.min_sample_rate <= 16000, g, "min_sample_rate", self.min_sample_rate,
                 "an integer in (0, 16000]")
        _require(self.max_sample_rate >= 16000, g, "max_sample_rate", self.max_sample_rate,
                 "an integer >= 16000")
        _require(self.max_channels >= 1, g, "max_channels", self.max_channels, ">= 1")
        _require(self.resample_quality in RESAMPLE_QUALITIES, g, "resample_quality",
                 self.resample_quality, f"one of {RESAMPLE_QUALITIES}")
        _require(self.gap_tolerance_s >= 0, g, "gap_tolerance_s", self.gap_tolerance_s, ">= 0")
        _require(self.max_gap_fill_s >= 0, g, "max_gap_fill_s", self.max_gap_fill_s, ">= 0")
        _require(0 <= self.clip_warning_fraction <= 1, g, "clip_warning_fraction",
                 self.clip_warning_fraction, "a fraction in [0, 1]")


@dataclass(frozen=True)
class VadConfig:
    """Voice activity detection (silero-vad) and endpointing of utterances."""

    threshold: float = 0.5
    # Speech continues while the probability stays above threshold - this margin (hysteresis).
    release_margin: float = 0.15
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 100
    max_utterance_s: float = 30.0

    def __post_init__(self) -> None:
        g = "vad"
        _require(0 < self.threshold < 1, g, "threshold", self.threshold, "a value in (0, 1)")
        _require(0 <= self.release_margin < self.threshold, g, "release_margin",
                 self.release_margin, "a value in [0, threshold)")
        _require(self.min_speech_ms >= 0, g, "min_speech_ms", self.min_speech_ms, ">= 0")
        _require(self.min_silence_ms > 0, g, "min_silence_ms", self.min_silence_ms, "> 0")
        _require(self.speech_pad_ms >= 0, g, "speech_pad_ms", self.speech_pad_ms, ">= 0")
        _require(self.max_utterance_s > self.min_speech_ms / 1000, g, "max_utterance_s",
                 self.max_utterance_s, "longer than min_speech_ms")


@dataclass(frozen=True)
class ImageConfig:
    """Camera frame buffer: how many frames are kept and how old a usable frame may be."""

    max_age_s: float = 2.0
    buffer_length: int = 30

    def __post_init__(self) -> None:
        _require(self.max_age_s > 0, "image", "max_age_s", self.max_age_s, "> 0")
        _require(self.buffer_length >= 1, "image", "buffer_length", self.buffer_length, ">= 1")


@dataclass(frozen=True)
class ListenConfig:
    """When the engine listens and whether the user may interrupt the robot."""

    mode: str = "always"
    barge_in: bool = True
    # Ignore the microphone while the robot speaks (no echo cancellation available).
    half_duplex: bool = False

    def __post_init__(self) -> None:
        _require(self.mode in LISTEN_MODES, "listen", "mode", self.mode, f"one of {LISTEN_MODES}")


@dataclass(frozen=True)
class ConversationConfig:
    """Prompt, history bounds and per-turn behaviour of the conversation."""

    # Empty means the checkpoint's own Stream-Omni system prompt.
    system_prompt: str = ""
    max_turns: int = 8
    max_history_tokens: int = 2048
    speak: bool = True
    use_camera: bool = True
    partial_interval_s: float = 0.5
    early_prefill: bool = True
    # Undelivered events beyond this count are dropped oldest-first (consumer is not reading).
    max_pending_events: int = 10000

    def __post_init__(self) -> None:
        g = "conversation"
        _require(self.max_turns >= 0, g, "max_turns", self.max_turns, ">= 0")
        _require(self.max_history_tokens >= 0, g, "max_history_tokens",
                 self.max_history_tokens, ">= 0")
        _require(self.partial_interval_s > 0, g, "partial_interval_s",
                 self.partial_interval_s, "> 0")
        _require(self.max_pending_events >= 100, g, "max_pending_events",
                 self.max_pending_events, ">= 100")


@dataclass(frozen=True)
class EngineConfig:
    """All engine settings, grouped per component (ROS parameters ``group.field``)."""

    audio: AudioInputConfig = field(default_factory=AudioInputConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    conversation: ConversationConfig = field(default_factory=ConversationConfig)

