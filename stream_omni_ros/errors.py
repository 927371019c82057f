"""The package's exception hierarchy: every error names what was wrong and what was expected."""
from enum import StrEnum


class StreamOmniError(Exception):
    """Base class of every error raised by stream_omni_ros."""


class CheckpointError(StreamOmniError):
    """A checkpoint folder, file, config field or tensor is missing or does not match."""


class InputReason(StrEnum):
    """What was wrong with an input: the `<reason>` of the `*.dropped.<reason>` diagnostics."""

    ENCODING = "encoding"  # unknown audio or pixel encoding
    SAMPLE_RATE = "sample_rate"  # audio rate outside audio.min_sample_rate..max_sample_rate
    CHANNELS = "channels"  # 0 or more than audio.max_channels
    EMPTY = "empty"  # no data
    SIZE = "size"  # data that is not a whole number of frames, or not step x height
    NOT_FINITE = "not_finite"  # NaN or infinite values
    TOO_LONG = "too_long"  # more than audio.max_chunk_s in one chunk
    STEP = "step"  # an image row step shorter than a row
    ODD_WIDTH = "odd_width"  # YUV 4:2:2 with an odd width
    TOO_LARGE = "too_large"  # more pixels or bytes than allowed
    FORMAT = "format"  # compressed image data neither JPEG nor PNG
    DECODE = "decode"  # unreadable JPEG or PNG
    STAMP = "stamp"  # a stamp that is not finite
    FUTURE = "future"  # stamped further ahead of the clock than allowed
    RATE_LIMIT = "rate_limit"  # frames faster than image.max_rate_hz
    OUT_OF_RANGE = "out_of_range"  # a turn option (top_p, token limits) outside its range
    CODING = "coding_format"  # compressed audio (mp3) where PCM ("wave") is expected
    NO_FORMAT = "no_audio_info"  # audio received before the message describing its format
    QUEUE_FULL = "queue_full"  # more queued than a bounded queue holds
    INVALID = "invalid"  # any other malformed request (to the model, the engine's API)


class InputError(StreamOmniError):
    """A request's input (audio, image, units, text) is malformed or out of range.

    `reason` says what was wrong, machine-readable; it is set where the error is raised, and
    nodes count what they drop under it.
    """

    def __init__(self, message: str, reason: InputReason = InputReason.INVALID) -> None:
        super().__init__(message)
        self.reason = InputReason(reason)


class ConfigError(StreamOmniError):
    """A configuration value is invalid."""
