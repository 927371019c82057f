"""The package's exception hierarchy: every error names what was wrong and what was expected."""


class StreamOmniError(Exception):
    """Base class of every error raised by stream_omni_ros."""


class CheckpointError(StreamOmniError):
    """A checkpoint folder, file, config field or tensor is missing or does not match."""


class InputError(StreamOmniError):
    """A request's input (audio, image, units, text) is malformed or out of range.

    `reason` is a short machine-readable key of what was wrong (e.g. "sample_rate",
    "not_finite", "too_large"), set where the error is raised; nodes count drops under it.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class ConfigError(StreamOmniError):
    """A configuration value is invalid."""
