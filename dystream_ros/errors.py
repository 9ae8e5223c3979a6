"""The project's exceptions: one small hierarchy, so callers can catch what they can act on."""
from __future__ import annotations


class DystreamError(Exception):
    """Base class of every error raised on purpose by dystream_ros."""


class ConfigError(DystreamError):
    """A configuration or parameter value is invalid."""


class CheckpointError(DystreamError):
    """A weights file is missing, corrupt or does not match the model it is loaded into."""


class StreamError(DystreamError):
    """Audio or motion given to a streaming component breaks its contract (rate, shape, dtype)."""


class DataError(DystreamError):
    """A dataset file (audio, video, motion) cannot be read or is malformed."""
