"""Typed events of the conversation engine, delivered in order; each names its turn."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np

# TurnStarted.source values.
SOURCE_SPEECH = "speech"
SOURCE_PUSH_TO_TALK = "push_to_talk"
SOURCE_TEXT = "text"

# TurnCancelled.reason / SpeechInterrupted.reason values.
CANCEL_BARGE_IN = "barge_in"
CANCEL_REQUESTED = "cancel"
CANCEL_RESET = "reset"
CANCEL_STOP = "stop"
CANCEL_AUDIO_LOST = "audio_lost"  # the microphone went silent mid-utterance (watchdog)
CANCEL_ERROR = "error"  # the responder failed; an EngineError event says why

# ConversationEngine.state values, published by omni_node as NodeState.label.
STATE_IDLE = "idle"
STATE_LISTENING = "listening"
STATE_USER_SPEAKING = "user_speaking"
STATE_THINKING = "thinking"
STATE_SPEAKING = "speaking"
# What a node shows beside them: a failed turn, and no engine (no model loaded).
STATE_ERROR = "error"
STATE_UNLOADED = "unloaded"


@dataclass(frozen=True)
class TurnStarted:
    """A user turn began (speech detected, push-to-talk opened, or a text request)."""

    turn_id: int
    source: str
    start_stamp: float | None  # caller-clock time of the first utterance sample


@dataclass(frozen=True)
class TranscriptPartial:
    """Transcript of the speech heard so far while the user is still talking."""

    turn_id: int
    text: str
    audio_s: float
    audio_frame_id: str = ""  # frame_id of the microphone chunks heard


@dataclass(frozen=True)
class TranscriptFinal:
    """Transcript of the whole utterance (the request text for text turns)."""

    turn_id: int
    text: str
    start_stamp: float | None
    end_stamp: float | None
    truncated: bool = False  # cut at vad.max_utterance_s
    audio_frame_id: str = ""  # frame_id of the microphone chunks of the utterance, if any


@dataclass(frozen=True)
class ResponseDelta:
    """New stable response text; `text` is the whole response so far."""

    turn_id: int
    delta: str
    text: str


@dataclass(frozen=True)
class SpeechChunk:
    """A piece of the spoken response: float32 mono PCM in [-1, 1]."""

    turn_id: int
    pcm: np.ndarray
    sample_rate: int
    index: int
    is_final: bool = False


@dataclass(frozen=True)
class TurnMetrics:
    """Latencies measured from the endpoint (end of user speech detected), and throughput."""

    endpoint_to_transcript_s: float | None
    endpoint_to_first_text_s: float | None
    endpoint_to_first_audio_s: float | None
    text_tokens: int
    tokens_per_s: float | None
    audio_s: float
    real_time_factor: float | None  # generation wall time / seconds of audio produced


@dataclass(frozen=True)
class TurnFinished:
    """The response is complete (its audio may still be playing)."""

    turn_id: int
    transcript: str
    response: str
    reason: str
    metrics: TurnMetrics
    image_stamp: float | None  # stamp of the camera frame used, None without an image
    image_note: str = ""  # why no image was used
    image_frame_id: str = ""  # frame_id of the camera frame used


@dataclass(frozen=True)
class TurnCancelled:
    """The turn stopped early; a sink should drop this turn's audio it has not played yet."""

    turn_id: int
    reason: str
    unplayed_s: float


@dataclass(frozen=True)
class SpeechInterrupted:
    """Barge-in while a finished turn's audio was still playing: drop its unplayed audio."""

    turn_id: int
    reason: str
    unplayed_s: float


@dataclass(frozen=True)
class InputWarning:
    """Input was degraded or ignored (gap, clipping, utterance cut, speech ignored)."""

    turn_id: int | None
    kind: str
    message: str


@dataclass(frozen=True)
class EngineError:
    """A turn or a request failed; the engine keeps running."""

    turn_id: int | None
    kind: str
    message: str


EngineEvent = Union[TurnStarted, TranscriptPartial, TranscriptFinal, ResponseDelta, SpeechChunk,
                    TurnFinished, TurnCancelled, SpeechInterrupted, InputWarning, EngineError]
