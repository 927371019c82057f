"""The package's exception hierarchy: every error names what was wrong and what was expected."""


class StreamOmniError(Exception):
    """Base class of every error raised by stream_omni_ros."""


class CheckpointError(StreamOmniError):
    """A checkpoint folder, file, config field or tensor is missing or does not match."""


class InputError(StreamOmniError):
    """A request's input (audio, image, units, text) is malformed or out of range."""


class ConfigError(StreamOmniError):
    """A configuration value is invalid."""
