"""Engine events -> omni_node output messages (asr/*, response/*, audio/out, state)."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from stream_omni_ros.engine.events import (CANCEL_ERROR, STATE_ERROR, STATE_IDLE, STATE_LISTENING,
                                           STATE_SPEAKING, STATE_THINKING, STATE_USER_SPEAKING,
                                           EngineError, EngineEvent, ResponseDelta, SpeechChunk,
                                           TranscriptFinal, TranscriptPartial, TurnCancelled,
                                           TurnFinished, TurnStarted)
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.nodes.audio_conversions import pcm_to_audio_msg
from stream_omni_ros.nodes.omni_config import AudioOutputConfig
from stream_omni_ros.nodes.stamps import seconds_to_time_msg

STATE_CODES = {STATE_IDLE: NodeState.IDLE, STATE_LISTENING: NodeState.LISTENING,
               STATE_USER_SPEAKING: NodeState.USER_SPEAKING, STATE_THINKING: NodeState.THINKING,
               STATE_SPEAKING: NodeState.SPEAKING, STATE_ERROR: NodeState.ERROR}
RELIABLE_10 = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
AUDIO_OUT_QOS = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
STATE_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL)


# Model end reasons -> the stop_reason words of ResponseText / Converse.
STOP_REASONS = {"text_eos": "eos", "unit_eos": "eos", "end_of_output": "eos",
                "max_new_tokens": "max_tokens", "max_new_units": "max_units"}


def end_reason_to_stop_reason(reason: str) -> str:
    """A TurnFinished reason as a ResponseText.stop_reason ("eos", "max_tokens", ...)."""
    return STOP_REASONS.get(reason, reason)


def cancel_reason_to_stop_reason(reason: str) -> str:
    """A TurnCancelled reason as a ResponseText.stop_reason: "error" or "cancelled"."""
    return "error" if reason == CANCEL_ERROR else "cancelled"


@dataclass
class _TurnCounters:
    """Per-turn message counters and the utterance start used for transcript stamps."""

    audio_start: float | None = None
    asr_seq: int = 0
    response_seq: int = 0
    audio_chunks: int = 0
    audio_final_sent: bool = False
    sample_rate: int = 0


class EventPublisher:
    """Owns the output publishers of an active node and turns each engine event into messages."""

    def __init__(self, node: Node, audio_out: AudioOutputConfig) -> None:
        self._node = node
        self._audio_out = audio_out
        self._pubs = {name: node.create_publisher(msg_type, name, qos) for name, msg_type, qos in (
            ("asr/partial", Transcript, RELIABLE_10), ("asr/final", Transcript, RELIABLE_10),
            ("response/partial", ResponseText, RELIABLE_10),
            ("response/final", ResponseText, RELIABLE_10),
            ("audio/out", AudioChunk, AUDIO_OUT_QOS))}
        self._turns: dict[int, _TurnCounters] = {}

    def destroy(self) -> None:
        """Destroy every publisher (on deactivate)."""
        for pub in self._pubs.values():
            self._node.destroy_publisher(pub)
        self._pubs.clear()

    def _now(self) -> Time:
        return self._node.get_clock().now().to_msg()

    def _turn(self, turn_id: int) -> _TurnCounters:
        if turn_id not in self._turns:
            self._turns = {k: v for k, v in self._turns.items() if k > turn_id - 16}
            self._turns[turn_id] = _TurnCounters()
        return self._turns[turn_id]

    def publish(self, event: EngineEvent) -> None:
        """Publish the messages that belong to one engine event."""
        if isinstance(event, TurnStarted):
            self._turn(event.turn_id).audio_start = event.start_stamp
        elif isinstance(event, TranscriptPartial):
            start = self._turn(event.turn_id).audio_start
            end = None if start is None else start + event.audio_s
            self._transcript(event.turn_id, event.text, False, start, end, event.audio_frame_id)
        elif isinstance(event, TranscriptFinal):
            self._transcript(event.turn_id, event.text, True, event.start_stamp, event.end_stamp,
                             event.audio_frame_id)
        elif isinstance(event, ResponseDelta):
            self._response(event.turn_id, event.delta, event.text)
        elif isinstance(event, SpeechChunk):
            self._speech(event)
        elif isinstance(event, TurnFinished):
            self._response(event.turn_id, "", event.response,
                           end_reason_to_stop_reason(event.reason), event.image_stamp,
                           event.image_frame_id)
        elif isinstance(event, TurnCancelled):
            self._response(event.turn_id, "", "", cancel_reason_to_stop_reason(event.reason))
            self._close_audio(event.turn_id)

    def _transcript(self, turn_id: int, text: str, is_final: bool, start: float | None,
                    end: float | None, frame_id: str) -> None:
        counters = self._turn(turn_id)
        msg = Transcript(turn_id=turn_id, seq=counters.asr_seq, text=text, is_final=is_final,
                         audio_start=seconds_to_time_msg(start),
                         audio_end=seconds_to_time_msg(end))
        msg.header.stamp, msg.header.frame_id = self._now(), frame_id
        counters.asr_seq += 1
        self._pubs["asr/final" if is_final else "asr/partial"].publish(msg)

    def _response(self, turn_id: int, delta: str, text: str, stop_reason: str | None = None,
                  image_stamp: float | None = None, image_frame_id: str = "") -> None:
        counters = self._turn(turn_id)
        msg = ResponseText(turn_id=turn_id, seq=counters.response_seq, delta=delta, text=text,
                           is_final=stop_reason is not None, stop_reason=stop_reason or "",
                           used_image=image_stamp is not None,
                           image_stamp=seconds_to_time_msg(image_stamp),
                           image_frame_id=image_frame_id)
        msg.header.stamp = self._now()
        counters.response_seq += 1
        self._pubs["response/final" if msg.is_final else "response/partial"].publish(msg)

    def _speech(self, chunk: SpeechChunk) -> None:
        counters = self._turn(chunk.turn_id)
        self._pubs["audio/out"].publish(pcm_to_audio_msg(
            chunk.pcm, chunk.sample_rate, encoding=self._audio_out.encoding, stamp=self._now(),
            frame_id=self._audio_out.frame_id, turn_id=chunk.turn_id, seq=counters.audio_chunks,
            is_final=chunk.is_final))
        counters.audio_chunks += 1
        counters.audio_final_sent = chunk.is_final
        counters.sample_rate = chunk.sample_rate

    def _close_audio(self, turn_id: int) -> None:
        """A cancelled turn's speech ends with an empty final chunk so sinks close it."""
        counters = self._turn(turn_id)
        if counters.audio_chunks and not counters.audio_final_sent:
            empty = np.zeros(0, np.float32)
            self._speech(SpeechChunk(turn_id, empty, counters.sample_rate, 0, True))


class StatePublisher:
    """Publishes NodeState (latched) whenever state, turn, listening flag or detail change."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._pub = node.create_publisher(NodeState, "state", STATE_QOS)
        self._last: tuple | None = None
        self._lock = threading.Lock()  # the state timer and the audio/in callback both update
        self.turn_id = 0
        self.error = ""  # detail of the last failed turn; cleared when a new turn starts

    def observe(self, event: EngineEvent) -> None:
        """Follow turn ids and failures from the event stream."""
        if isinstance(event, TurnStarted):
            self.turn_id, self.error = event.turn_id, ""
        elif isinstance(event, EngineError):
            self.turn_id = event.turn_id or self.turn_id
            self.error = f"{event.kind}: {event.message}"

    def update(self, label: str, listening: bool, detail: str = "") -> None:
        """Publish if anything changed since the last message."""
        with self._lock:
            if self.error:
                label, detail = STATE_ERROR, self.error
            key = (label, self.turn_id, listening, detail)
            if key == self._last:
                return
            self._last = key
            msg = NodeState(state=STATE_CODES[label], label=label, turn_id=self.turn_id,
                            listening=listening, detail=detail)
            msg.header.stamp = self._node.get_clock().now().to_msg()
            self._pub.publish(msg)
