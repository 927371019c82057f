"""The `~/converse` action of omni_node: one turn per goal, engine events as feedback."""
from __future__ import annotations

import math
import queue
import threading
import time
import traceback
from typing import Callable

import numpy as np
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy

from stream_omni_ros.action import Converse
from stream_omni_ros.engine.audio_input import chunks_to_utterance
from stream_omni_ros.engine.config import AudioInputConfig
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (EngineError, EngineEvent, ResponseDelta, SpeechChunk,
                                           TranscriptFinal, TranscriptPartial, TurnCancelled,
                                           TurnFinished, TurnStarted)
from stream_omni_ros.engine.responder import TurnOptions
from stream_omni_ros.errors import InputError, InputReason, StreamOmniError
from stream_omni_ros.msg import AudioChunk
from stream_omni_ros.nodes.conversions import image_msg_to_rgb
from stream_omni_ros.nodes.omni_diagnostics import InputCounters
from stream_omni_ros.nodes.omni_goals import MAX_GOALS, GoalQueue
from stream_omni_ros.nodes.omni_inputs import audio_msg_to_pcm_chunk
from stream_omni_ros.nodes.omni_publishers import (STATE_CODES, cancel_reason_to_stop_reason,
                                                   end_reason_to_stop_reason)
from stream_omni_ros.nodes.stamps import seconds_to_time_msg, time_msg_to_seconds

CANCEL_WAIT_S = 5.0  # how long a cancelled goal waits for its turn to report the cancel
CLOSE_WAIT_S = 2 * CANCEL_WAIT_S  # how long deactivate waits for every goal to end
LOG_THROTTLE_S = 5.0
# Goal, cancel and result requests that a burst may queue before the executor takes them; more
# than the goals admitted (MAX_GOALS), so the surplus is read and refused, never lost unread.
REQUEST_QOS = QoSProfile(depth=4 * MAX_GOALS, reliability=ReliabilityPolicy.RELIABLE)


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

    def forget(self, events: queue.Queue) -> None:
        """Stop delivering to a goal's queue (its goal ended, maybe before its turn started)."""
        with self.lock:
            if events in self._next_turn:
                self._next_turn.remove(events)
            for watchers in self._by_turn.values():
                if events in watchers:
                    watchers.remove(events)

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


def goal_audio_to_samples(chunks: list[AudioChunk], config: AudioInputConfig) -> np.ndarray:
    """Goal audio chunks -> one 16 kHz mono utterance, checked and converted as audio/in is."""
    try:
        return chunks_to_utterance([audio_msg_to_pcm_chunk(msg) for msg in chunks], config)
    except InputError as error:
        raise InputError(f"Converse goal {error}", error.reason) from error


def goal_to_turn_options(goal: Converse.Goal) -> TurnOptions:
    """Goal fields -> per-turn options; the goal's defaults (true, -1) keep the node's own."""
    for name in ("temperature", "top_p"):  # NaN compares false and would pass as "default"
        if not math.isfinite(getattr(goal, name)):
            raise InputError(f"Converse goal {name} {getattr(goal, name)} is not a number; "
                             "expected a finite value (negative: the node's default)",
                             InputReason.NOT_FINITE)
    return TurnOptions(
        speak=None if goal.speak else False,
        use_camera=None if goal.use_camera else False,
        temperature=float(goal.temperature) if goal.temperature >= 0 else None,
        top_p=float(goal.top_p) if goal.top_p > 0 else None,
        max_new_tokens=int(goal.max_new_tokens) if goal.max_new_tokens > 0 else None,
        max_new_units=int(goal.max_new_units) if goal.max_new_units > 0 else None)


def ended_result(stop_reason: str, error: str) -> Converse.Result:
    """The result of a goal that ended without a turn's events (latencies unknown: -1)."""
    return Converse.Result(stop_reason=stop_reason, error=error, endpoint_to_transcript_s=-1.0,
                           endpoint_to_first_token_s=-1.0, endpoint_to_first_audio_s=-1.0)


def _or_minus_one(value: float | None) -> float:
    return -1.0 if value is None else float(value)


class TurnResult:
    """Accumulates one turn's events into feedback and the final Converse result."""

    def __init__(self) -> None:
        self.result = ended_result("", "")
        self.audio_s = 0.0
        self.ended = False
        self.cancel_reason = ""  # the engine's reason when the turn was cancelled

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
            r.stop_reason = cancel_reason_to_stop_reason(event.reason)
            self.cancel_reason = event.reason
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
    """Action server `~/converse` in its own (reentrant) callback group; see omni_goals."""

    def __init__(self, node: Node, engine: ConversationEngine, router: TurnRouter,
                 now_s: Callable[[], float], counters: InputCounters) -> None:
        self._node, self._router, self._now_s = node, router, now_s
        self._engine: ConversationEngine | None = engine  # None once destroyed
        self._counters = counters
        self._goals = GoalQueue()
        self._server = ActionServer(
            node, Converse, "~/converse", self._execute, goal_callback=self._admit,
            handle_accepted_callback=self._goals.accepted, cancel_callback=self._cancel,
            callback_group=ReentrantCallbackGroup(), goal_service_qos_profile=REQUEST_QOS,
            result_service_qos_profile=REQUEST_QOS, cancel_service_qos_profile=REQUEST_QOS)

    def open(self) -> None:
        """Admit goals (on activate)."""
        self._goals.reopen()

    def close(self, reason: str) -> None:
        """Admit no goal; every accepted one ends now, with `reason` in its result."""
        self._goals.close(reason)

    def wait_ended(self) -> bool:
        """Wait until every accepted goal has ended; False if one is left after the wait."""
        return self._goals.wait_empty(CLOSE_WAIT_S)

    def destroy(self, flush: bool) -> None:
        """End every goal, let the executor send their results (`flush`), stop serving."""
        self.close("omni_node was cleaned up")
        self.wait_ended()
        executor = self._node.executor
        if flush and executor is not None:
            # result responses go out in executor tasks made when each goal ended; one more
            # task, run after them, says they were handed to the middleware
            sent = threading.Event()
            executor.create_task(sent.set)
            sent.wait(CLOSE_WAIT_S)
        self._server.destroy()
        # the executor may hold the server a little longer; the model must be freed now
        self._engine = None

    def _admit(self, _: Converse.Goal) -> GoalResponse:
        refusal = self._goals.admit()
        if refusal is None:
            return GoalResponse.ACCEPT
        self._counters.add(f"converse.rejected.{refusal.key}")
        self._node.get_logger().warning(f"Converse goal rejected: {refusal.message}",
                                        throttle_duration_sec=LOG_THROTTLE_S)
        return GoalResponse.REJECT

    def _cancel(self, goal_handle) -> CancelResponse:
        self._goals.withdraw(goal_handle)  # a waiting goal ends now; a running one stops its turn
        return CancelResponse.ACCEPT

    def _execute(self, goal_handle) -> Converse.Result:
        try:
            return self._run(goal_handle)
        except Exception as error:  # a fault here must still end the goal, with its reason
            self._node.get_logger().error(
                f"Converse goal failed: {error!r}\n{traceback.format_exc()}")
            if goal_handle.is_active:
                goal_handle.abort()
            return ended_result("error", f"{type(error).__name__}: {error}")
        finally:
            self._goals.finished(goal_handle)

    def _run(self, goal_handle) -> Converse.Result:
        if self._goals.was_withdrawn(goal_handle):
            return self._cancelled_while_waiting(goal_handle)
        closed = self._goals.closed_reason()
        if closed is not None:
            goal_handle.abort()
            return ended_result("cancelled", f"{closed} before the goal started")
        try:
            events, turn_id = self._start(goal_handle.request)
        except StreamOmniError as error:  # bad goal input: this goal fails, the node serves on
            if isinstance(error, InputError):
                self._counters.add(f"converse.dropped.{error.reason}")
            self._node.get_logger().warning(f"Converse goal rejected: {error}")
            goal_handle.abort()
            return ended_result("error", str(error))
        try:
            turn = self._follow(goal_handle, events, turn_id)
        finally:
            self._router.forget(events)
        return self._conclude(goal_handle, turn)

    @staticmethod
    def _cancelled_while_waiting(goal_handle) -> Converse.Result:
        # rclpy marks the goal canceling right after the cancel callback that withdrew it
        deadline = time.monotonic() + CANCEL_WAIT_S
        while not goal_handle.is_cancel_requested and time.monotonic() < deadline:
            time.sleep(0.005)
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
        else:
            goal_handle.abort()
        return ended_result("cancelled", "")

    def _conclude(self, goal_handle, turn: TurnResult) -> Converse.Result:
        """Set the goal's terminal state from how its turn ended."""
        result = turn.result
        stopped = result.stop_reason == "cancelled" or not turn.ended
        if stopped:
            result.stop_reason = "cancelled"
        if goal_handle.is_cancel_requested and stopped:
            goal_handle.canceled()
        elif stopped or result.stop_reason == "error":
            # failed, or stopped by a service, barge-in, reset or deactivate: say which
            closed = self._goals.closed_reason()
            if not result.error:
                result.error = f"{closed} during the turn" if closed is not None else \
                    f"the turn was stopped ({turn.cancel_reason or 'no answer in time'})"
            goal_handle.abort()
        else:
            goal_handle.succeed()
        return result

    def _start(self, goal: Converse.Goal) -> tuple[queue.Queue, int | None]:
        """Hand the goal's question to the engine; return its turn's event queue and id."""
        options = goal_to_turn_options(goal)  # decode everything before touching the engine
        image, image_stamp = self._goal_image(goal)
        samples = goal_audio_to_samples(list(goal.audio), self._engine.config.audio) \
            if goal.audio and not goal.text else None
        if goal.reset_history:
            self._engine.reset()
        with self._router.lock:  # registered before the turn can emit its first event
            if goal.text:
                turn_id = self._engine.request_turn(goal.text, options, image, image_stamp)
            elif samples is not None:
                turn_id = self._engine.submit_audio_turn(samples, options, image, image_stamp)
            else:  # take the next utterance heard (arms listening in on_request mode)
                turn_id = self._engine.request_turn(None, options, image, image_stamp)
            return self._router.watch(turn_id), turn_id

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
            raise InputError(f"Converse goal images[{len(goal.images) - 1}]: {error}",
                             error.reason) from error
        stamp = time_msg_to_seconds(msg.header.stamp)
        return rgb, stamp if stamp > 0 else self._now_s()

    def _follow(self, goal_handle, events: queue.Queue, turn_id: int | None) -> TurnResult:
        """Turn events -> feedback until the turn ends (or a stop gets no answer in time)."""
        turn, stop_deadline = TurnResult(), None
        while not turn.ended and goal_handle.is_active:
            turn_id = turn_id or turn.result.turn_id or None
            stopping = goal_handle.is_cancel_requested or self._goals.closed_reason() is not None
            if stopping and stop_deadline is None:
                if turn_id is not None:
                    self._engine.cancel_turn(turn_id)  # this goal's turn, no other
                stop_deadline = time.monotonic() + CANCEL_WAIT_S
            if stop_deadline is not None and (turn_id is None
                                              or time.monotonic() > stop_deadline):
                break  # no turn started yet, or the engine never answered the stop
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
