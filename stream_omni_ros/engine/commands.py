"""Commands the engine hands to its model worker (besides the listener's utterance commands)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream_omni_ros.engine.image_buffer import StampedImage
from stream_omni_ros.engine.responder import TurnOptions


@dataclass(frozen=True)
class TextTurn:
    """A typed request to answer."""

    turn_id: int
    text: str
    stamp: float
    request_time: float  # time.monotonic() of the request (the "endpoint" of a text turn)
    options: TurnOptions = field(default_factory=TurnOptions)
    image: StampedImage | None = None  # given with the request: used instead of the camera


@dataclass(frozen=True)
class AudioTurn:
    """A complete utterance handed over as audio, bypassing the microphone front end and VAD."""

    turn_id: int
    audio: np.ndarray  # [N] float32, 16 kHz mono
    start_stamp: float
    end_stamp: float
    endpoint_time: float  # time.monotonic() of the submission
    options: TurnOptions = field(default_factory=TurnOptions)
    image: StampedImage | None = None
    truncated: bool = False  # read like UtteranceEnded.truncated when the transcript is emitted
    audio_frame_id: str = ""  # read like UtteranceEnded.audio_frame_id


@dataclass(frozen=True)
class Abandoned:
    """A turn dropped while the user was still talking."""

    turn_id: int
    reason: str


@dataclass(frozen=True)
class InterruptPlayback:
    """Drop the unplayed audio of a turn whose generation may already be over."""

    turn_id: int | None
    reason: str


@dataclass(frozen=True)
class ResetHistory:
    """Forget the conversation."""


@dataclass(frozen=True)
class StopWorker:
    """End the worker loop."""
