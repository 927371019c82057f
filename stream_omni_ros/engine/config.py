"""Configuration of the conversation engine: one frozen dataclass per component.

Every default is written here and only here. Fields are plain scalars, strings or booleans so that
the ROS layer can expose each one as a parameter named ``group.field``.
"""
from __future__ import annotations

from dataclasses import dataclass

from stream_omni_ros.config_fields import described, described_factory
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

LISTEN_MODES = ("always", "on_request", "push_to_talk")
FRAME_MOMENTS = ("speech_start", "utterance_end")
RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")
WITHOUT_REFERENCE = ("no_barge_in", "barge_in")


def _require(condition: bool, group: str, name: str, value: object, expected: str) -> None:
    if not condition:
        raise ConfigError(f"{group}.{name} = {value!r} is invalid; expected {expected}")


@dataclass(frozen=True)
class AudioInputConfig:
    """Microphone chunk conversion to 16 kHz mono: accepted rates, gap and clipping detection."""

    min_sample_rate: int = described(
        4000, "lowest microphone sample rate accepted; slower chunks are rejected", units="Hz")
    max_sample_rate: int = described(
        384000, "highest microphone sample rate accepted; faster chunks are rejected",
        units="Hz")
    max_channels: int = described(
        32, "most interleaved microphone channels accepted (they are averaged to mono)")
    # Bounds the bytes one chunk may make the front end convert (a driver sends ~20 ms).
    max_chunk_s: float = described(
        2.0, "longest microphone chunk accepted; longer chunks are rejected", units="s")
    resample_quality: str = described(
        "HQ", "soxr quality of the resampling to 16 kHz: QQ, LQ, MQ, HQ or VHQ")
    # Stamps from a driver jitter by a few ms; only larger holes count as lost audio.
    gap_tolerance_s: float = described(
        0.02, "chunk stamp lateness still taken as jitter, not as lost audio", units="s")
    # Lost audio is replaced by silence up to this length so utterance times stay aligned.
    max_gap_fill_s: float = described(
        1.0, "most silence inserted for one gap of lost microphone audio", units="s")
    clip_warning_fraction: float = described(
        0.01, "fraction of full-scale samples in a chunk that raises a clipping warning")
    # A driver or publisher that dies mid-utterance sends no end of speech (microphone watchdog).
    stall_timeout_s: float = described(
        3.0, "an utterance with no microphone audio arriving for this long is abandoned",
        units="s")

    def __post_init__(self) -> None:
        g = "audio"
        _require(0 < self.min_sample_rate <= MODEL_SAMPLE_RATE, g, "min_sample_rate",
                 self.min_sample_rate, f"an integer in (0, {MODEL_SAMPLE_RATE}]")
        _require(self.max_sample_rate >= MODEL_SAMPLE_RATE, g, "max_sample_rate",
                 self.max_sample_rate, f"an integer >= {MODEL_SAMPLE_RATE}")
        _require(self.max_channels >= 1, g, "max_channels", self.max_channels, ">= 1")
        _require(self.max_chunk_s > 0, g, "max_chunk_s", self.max_chunk_s, "> 0")
        _require(self.resample_quality in RESAMPLE_QUALITIES, g, "resample_quality",
                 self.resample_quality, f"one of {RESAMPLE_QUALITIES}")
        _require(self.gap_tolerance_s >= 0, g, "gap_tolerance_s", self.gap_tolerance_s, ">= 0")
        _require(self.max_gap_fill_s >= 0, g, "max_gap_fill_s", self.max_gap_fill_s, ">= 0")
        _require(0 <= self.clip_warning_fraction <= 1, g, "clip_warning_fraction",
                 self.clip_warning_fraction, "a fraction in [0, 1]")
        _require(self.stall_timeout_s > 0, g, "stall_timeout_s", self.stall_timeout_s, "> 0")


@dataclass(frozen=True)
class VadConfig:
    """Voice activity detection (silero-vad) and endpointing of utterances."""

    threshold: float = described(
        0.5, "silero-vad speech probability at or above which a 32 ms frame is speech")
    # Speech continues while the probability stays above threshold - this margin (hysteresis).
    release_margin: float = described(
        0.15, "speech ends only below threshold minus this probability margin")
    min_speech_ms: int = described(
        250, "voiced audio needed before an utterance starts (shorter is noise)", units="ms")
    min_silence_ms: int = described(
        500, "pause after speech that ends the utterance (endpoint)", units="ms")
    speech_pad_ms: int = described(
        100, "audio kept before speech start and after speech end", units="ms")
    max_utterance_s: float = described(
        30.0, "longest utterance; longer speech is cut here and answered", units="s")

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

    max_age_s: float = described(
        2.0, "oldest camera frame, before the moment it is taken for, that a turn may use",
        units="s")
    buffer_length: int = described(30, "camera frames kept (the last ones to arrive)")
    buffer_max_mb: float = described(
        256.0, "memory the kept camera frames (RGB) may take; the oldest arrivals go first",
        units="MiB")
    # A sim-time reset, an NTP step or a skewed camera clock must not pin a stale frame.
    max_future_s: float = described(
        1.0, "camera frames stamped more than this after the clock are refused, and kept "
        "ones dropped once the clock steps back behind them", units="s")
    # A frame known at speech start lets its image tokens (thousands of positions with anyres)
    # be prefilled while the user talks instead of after the endpoint.
    frame_at: str = described(
        "speech_start", "camera frame of a spoken turn: speech_start (nearest the speech "
        "start; prefilled while the user talks) or utterance_end (nearest the endpoint; "
        "prefilled after it)")

    def __post_init__(self) -> None:
        _require(self.max_age_s > 0, "image", "max_age_s", self.max_age_s, "> 0")
        _require(self.buffer_length >= 1, "image", "buffer_length", self.buffer_length, ">= 1")
        _require(self.buffer_max_mb > 0, "image", "buffer_max_mb", self.buffer_max_mb, "> 0")
        _require(self.max_future_s >= 0, "image", "max_future_s", self.max_future_s, ">= 0")
        _require(self.frame_at in FRAME_MOMENTS, "image", "frame_at", self.frame_at,
                 f"one of {FRAME_MOMENTS}")


@dataclass(frozen=True)
class ListenConfig:
    """When the engine listens and whether the user may interrupt the robot."""

    mode: str = described("always", "always: every utterance is a turn; on_request: only the "
                          "next one after a listen request; push_to_talk: from press to release")
    barge_in: bool = described(
        True, "user speech while the robot responds interrupts it; false ignores that speech")
    half_duplex: bool = described(
        False, "ignore the microphone while the robot responds (no echo cancellation)")
    # Audio reaches the node later than the button press that ends it (a loaded computer, a
    # network link, a replayed bag): the utterance ends once audio stamped up to the release has
    # arrived, or after this wait. Audio stamped further than this from the press is taken to
    # run on another clock, and the utterance is then delimited by arrival instead.
    late_audio_wait_s: float = described(
        1.0, "push-to-talk release: longest wait (wall time) for audio stamped before the release "
        "that has not arrived yet (expiry is counted and logged)", units="s")

    def __post_init__(self) -> None:
        _require(self.mode in LISTEN_MODES, "listen", "mode", self.mode, f"one of {LISTEN_MODES}")
        _require(self.late_audio_wait_s >= 0, "listen", "late_audio_wait_s",
                 self.late_audio_wait_s, ">= 0")


@dataclass(frozen=True)
class EchoConfig:
    """Acoustic echo cancellation of the robot's own voice, fed with what the speaker played."""

    cancel: bool = described(
        True, "remove the played audio (audio/played) from the microphone before the VAD")
    # No reference (no player, a third-party player, a microphone without stamps, the library
    # missing): the loudspeaker would trigger the VAD and the robot would interrupt itself.
    without_reference: str = described(
        "no_barge_in", "while the robot responds and no playback reference is live: "
        "no_barge_in takes no speech as a barge-in (it may be the robot's own voice); barge_in "
        "does (a headset, a robot without a loudspeaker)")
    reference_timeout_s: float = described(
        30.0, "a playback reference counts as live this long after the last audio/played "
        "chunk arrived", units="s")
    max_reference_s: float = described(
        5.0, "played audio kept for alignment with the microphone (bounds the buffer)", units="s")
    noise_suppression: bool = described(
        False, "also let the canceller suppress stationary noise")
    # While the robot talks, the canceller's suppressor holds back the user's first syllables
    # (double talk); requiring vad.min_speech_ms on top would delay a barge-in past 0.5 s.
    barge_in_min_speech_ms: int = described(
        32, "voiced audio that starts a barge-in while a converged echo reference is live "
        "(vad.min_speech_ms otherwise)", units="ms")
    converge_s: float = described(
        4.0, "played audio the canceller must have processed before barge_in_min_speech_ms "
        "applies: an unconverged canceller lets echo through", units="s")
    # a loaded robot delivers audio/played late; cancelling before it came would let echo pass
    reference_wait_s: float = described(
        0.5, "at most this much microphone audio waits for the playback reference covering "
        "it while the robot's answer plays", units="s")

    def __post_init__(self) -> None:
        _require(self.without_reference in WITHOUT_REFERENCE, "echo", "without_reference",
                 self.without_reference, f"one of {WITHOUT_REFERENCE}")
        _require(self.reference_timeout_s > 0, "echo", "reference_timeout_s",
                 self.reference_timeout_s, "> 0")
        _require(0.5 <= self.max_reference_s <= 60, "echo", "max_reference_s",
                 self.max_reference_s, "0.5..60")
        _require(self.barge_in_min_speech_ms >= 0, "echo", "barge_in_min_speech_ms",
                 self.barge_in_min_speech_ms, ">= 0")
        _require(self.converge_s >= 0, "echo", "converge_s", self.converge_s, ">= 0")
        _require(0 <= self.reference_wait_s < self.max_reference_s, "echo", "reference_wait_s",
                 self.reference_wait_s, "0 <= value < echo.max_reference_s")


@dataclass(frozen=True)
class ConversationConfig:
    """Prompt, history bounds and per-turn behaviour of the conversation."""

    system_prompt: str = described("", "system prompt of every turn; empty: the checkpoint's own")
    max_turns: int = described(
        8, "earlier exchanges kept as context (oldest dropped first); 0 forgets them")
    max_history_tokens: int = described(
        2048, "text tokens of kept exchanges at most (oldest dropped first)", units="tokens")
    speak: bool = described(True, "answer with speech on audio/out as well as text by default")
    use_camera: bool = described(
        True, "give each turn a camera frame (see image.frame_at) by default")
    partial_interval_s: float = described(
        0.5, "utterance audio between two partial transcripts while the user speaks",
        units="s")
    # Prefilling the history while the user still speaks shortens the time to the answer.
    early_prefill: bool = described(
        True, "prefill system prompt, history and a speech-start camera frame at speech "
        "start, before the endpoint")
    # Undelivered events beyond this count are dropped oldest-first (consumer is not reading).
    max_pending_events: int = described(
        10000, "most undelivered engine events queued before the oldest are dropped")

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

    audio: AudioInputConfig = described_factory(AudioInputConfig, "microphone conversion")
    vad: VadConfig = described_factory(VadConfig, "voice activity detection, endpointing")
    image: ImageConfig = described_factory(ImageConfig, "camera frame buffer")
    listen: ListenConfig = described_factory(ListenConfig, "listen mode and barge-in")
    echo: EchoConfig = described_factory(EchoConfig, "echo cancellation and its fallback")
    conversation: ConversationConfig = described_factory(
        ConversationConfig, "prompt, history and turn defaults")

