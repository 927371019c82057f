"""The `~/converse` action of omni_node: one turn per goal, engine events as feedback."""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable

import numpy as np
import soxr
from rclpy.action import ActionServer, CancelResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node

from stream_omni_ros.action import Converse
from stream_omni_ros.engine.audio_input import MODEL_SAMPLE_RATE
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (EngineError, EngineEvent, ResponseDelta, SpeechChunk,
                                           TranscriptFinal, TranscriptPartial, TurnCancelled,
                                           TurnFinished, TurnStarted)
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.errors import InputError, StreamOmniError
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm
from stream_omni_ros.nodes.conversions import image_msg_to_rgb
from stream_omni_ros.nodes.omni_publishers import (STATE_CODES, end_reason_to_stop_reason,
                                                   seconds_to_time_msg, time_msg_to_seconds)

CANCEL_WAIT_S = 5.0  # how long a cancelled goal waits for its turn to report the cancel


class TurnRouter:
    """Hands engine events to the goals that wait for their turn (or for the next turn)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # held while a goal starts its turn and registers
        self._by_turn: dict[int, list[queue.Queue]] = {}
        self._next_turn: list[queue.Queue] = []

    def watch(self, turn_id: int | None) -> queue.Queue:
        """A queue of the events of `turn_id` (None: the next turn that starts); hold `lock`."""
        events: queue.Queue = queue.Queue()
        if turn_id is None:
            self._next_turn.append(events)
        else:
            self._by_turn.setdefault(turn_id, []).append(events)
        return events

    def dispatch(self, event: EngineEvent) -> None:
        """Deliver an event to its turn's watchers; forget a turn once it ended."""
        turn_id = getattr(event, "turn_id", None)
        with self.lock:
            if isinstance(event, TurnStarted) and self._next_turn:
                self._by_turn.setdefault(turn_id, []).extend(self._next_turn)
                self._next_turn = []
            for events in self._by_turn.get(turn_id, []):
                events.put(event)
            if isinstance(event, (TurnFinished, TurnCancelled)):
                self._by_turn.pop(turn_id, None)


def goal_audio_to_samples(chunks: list[AudioChunk]) -> np.ndarray:
    """Goal audio chunks (any rate, layout, encoding) -> one 16 kHz mono float32 utterance."""
    pieces: list[np.ndarray] = []
    run: list[np.ndarray] = []  # mono chunks of one sample rate, resampled together
    rate = 0
    for index, msg in enumerate(chunks):
        try:
            pcm = audio_msg_to_pcm(msg)
        except InputError as error:
            raise InputError(f"Converse goal audio[{index}]: {error}") from error
        if pcm.sample_rate != rate and run:
            pieces.append(soxr.resample(np.concatenate(run), rate, MODEL_SAMPLE_RATE))
            run = []
        rate = pcm.sample_rate
        run.append(pcm.samples.mean(axis=1, dtype=np.float32))
    if run:
        pieces.append(soxr.resample(np.concatenate(run), rate, MODEL_SAMPLE_RATE))
    samples = np.concatenate(pieces).astype(np.float32, copy=False) if pieces else None
    if samples is None or samples.size == 0:
        raise InputError("Converse goal audio holds no samples; expected at least one frame")
    return samples


def goal_to_turn_options(goal: Converse.Goal) -> TurnOptions:
    """Goal fields -> per-turn options; the goal's defaults (true, -1) keep the node's own."""
    return TurnOptions(
        speak=None if goal.speak else False,
        use_camera=None if goal.use_camera else False,
        temperature=float(goal.temperature) if goal.temperature >= 0 else None,
        top_p=float(goal.top_p) if goal.top_p > 0 else None,
        max_new_tokens=int(goal.max_new_tokens) if goal.max_new_tokens > 0 else None,
        max_new_units=int(goal.max_new_units) if goal.max_new_units > 0 else None)


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else float(value)


class TurnResult:
    """Accumulates one turn's events into feedback and the final Converse result."""

    def __init__(self) -> None:
        self.result = Converse.Result(stop_reason="", endpoint_to_transcript_s=-1.0,
                                      endpoint_to_first_token_s=-1.0,
                                      endpoint_to_first_audio_s=-1.0)
        self.audio_s = 0.0
        self.ended = False

    def add(self, event: EngineEvent) -> str | None:
        """Update from an event; return the response delta it carries (None: no feedback)."""
        r = self.result
        r.turn_id = getattr(event, "turn_id", None) or r.turn_id
        if isinstance(event, (TranscriptPartial, TranscriptFinal)):
            r.transcript = event.text
        elif isinstance(event, ResponseDelta):
            r.response = event.text
            return event.delta
        elif isinstance(event, SpeechChunk):
            self.audio_s += len(event.pcm) / max(event.sample_rate, 1)
        elif isinstance(event, EngineError):
            r.error = f"{event.kind}: {event.message}"
            return None
        elif isinstance(event, TurnFinished):
            self._finished(event)
        elif isinstance(event, TurnCancelled):
            r.stop_reason = "error" if event.reason == "error" else "cancelled"
            self.ended = True
        return "" if not isinstance(event, TurnStarted) else None

    def _finished(self, event: TurnFinished) -> None:
        r, m = self.result, event.metrics
        r.transcript, r.response = event.transcript, event.response
        r.stop_reason = end_reason_to_stop_reason(event.reason)
        r.endpoint_to_transcript_s = _or_minus_one(m.endpoint_to_transcript_s)
        r.endpoint_to_first_token_s = _or_minus_one(m.endpoint_to_first_text_s)
        r.endpoint_to_first_audio_s = _or_minus_one(m.endpoint_to_first_audio_s)
        r.audio_duration_s, r.text_tokens = float(m.audio_s), int(m.text_tokens)
        r.tokens_per_second = float(m.tokens_per_s or 0.0)
        r.used_image = event.image_stamp is not None
        r.image_stamp = seconds_to_time_msg(event.image_stamp)
        self.ended = True


class ConverseServer:
    """Action server `~/converse` in its own (reentrant) callback group."""

    def __init__(self, node: Node, engine: ConversationEngine, router: TurnRouter,
                 now_s: Callable[[], float]) -> None:
        self._node, self._engine, self._router, self._now_s = node, engine, router, now_s
        self._server = ActionServer(node, Converse, "~/converse", self._execute,
                                    cancel_callback=lambda _: CancelResponse.ACCEPT,
                                    callback_group=ReentrantCallbackGroup())

    def destroy(self) -> None:
        """Stop serving goals (on deactivate)."""
        self._server.destroy()

    def _execute(self, goal_handle) -> Converse.Result:
        try:
            events = self._start(goal_handle.request)
        except StreamOmniError as error:  # bad goal input: this goal fails, the node serves on
            self._node.get_logger().warning(f"Converse goal rejected: {error}")
            goal_handle.abort()
            return Converse.Result(stop_reason="error", error=str(error))
        turn = self._follow(goal_handle, events)
        stopped = turn.result.stop_reason == "cancelled" or not turn.ended
        if goal_handle.is_cancel_requested and stopped:
            goal_handle.canceled()
        elif stopped or turn.result.stop_reason == "error":
            goal_handle.abort()  # failed, or stopped by a service, barge-in or deactivation
        else:
            goal_handle.succeed()
        return turn.result

    def _start(self, goal: Converse.Goal) -> queue.Queue:
        """Hand the goal's question to the engine; return the queue of its turn's events."""
        options = goal_to_turn_options(goal)  # decode everything before touching the engine
        image, image_stamp = self._goal_image(goal)
        samples = goal_audio_to_samples(list(goal.audio)) if goal.audio and not goal.text \
            else None
        if goal.reset_history:
            self._engine.reset()
        with self._router.lock:  # registered before the turn can emit its first event
            if goal.text:
                turn_id = self._engine.request_turn(goal.text, options, image, image_stamp)
            elif samples is not None:
                turn_id = self._engine.submit_audio_turn(samples, options, image, image_stamp)
            else:  # take the next utterance heard (arms listening in on_request mode)
                turn_id = self._engine.request_turn(None, options, image, image_stamp)
            return self._router.watch(turn_id)

    def _goal_image(self, goal: Converse.Goal) -> tuple[np.ndarray | None, float | None]:
        """The goal's image (the last one if several) as RGB and its stamp (now if unset)."""
        if not goal.images:
            return None, None
        if len(goal.images) > 1:
            self._node.get_logger().warning(
                f"Converse goal has {len(goal.images)} images; the answer uses the last one")
        msg = goal.images[-1]
        try:
            rgb = image_msg_to_rgb(msg)
        except InputError as error:
            raise InputError(f"Converse goal images[{len(goal.images) - 1}]: {error}") from error
        stamp = time_msg_to_seconds(msg.header.stamp)
        return rgb, stamp if stamp > 0 else self._now_s()

    def _follow(self, goal_handle, events: queue.Queue) -> TurnResult:
        """Turn events -> feedback until the turn ends (or a cancel gets no answer)."""
        turn, cancel_deadline = TurnResult(), None
        while not turn.ended and goal_handle.is_active:
            if goal_handle.is_cancel_requested and cancel_deadline is None:
                self._engine.cancel()
                cancel_deadline = time.monotonic() + CANCEL_WAIT_S
            if cancel_deadline is not None and (time.monotonic() > cancel_deadline
                                                or not turn.result.turn_id):
                break  # no turn started yet, or the engine never answered the cancel
            try:
                event = events.get(timeout=0.05)
            except queue.Empty:
                continue
            delta = turn.add(event)
            if delta is not None:
                goal_handle.publish_feedback(self._feedback(turn, delta))
        return turn

    def _feedback(self, turn: TurnResult, delta: str) -> Converse.Feedback:
        r = turn.result
        return Converse.Feedback(turn_id=r.turn_id, state=STATE_CODES[self._engine.state],
                                 transcript=r.transcript, response_delta=delta,
                                 response=r.response, audio_seconds=turn.audio_s)
