"""ConversationEngine: turn-taking around a Responder, with one worker thread that owns the model.

Public methods are thread-safe and never wait for the model: audio is endpointed in the caller's
thread (so barge-in is noticed while the model works) and turns are handed to the worker through
a command queue. Events leave through one ordered queue (or a callback).
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
import queue
import threading
import time
from typing import Callable, Iterator

import numpy as np

from stream_omni_ros.engine.audio_input import PcmChunk
from stream_omni_ros.engine.commands import (Abandoned, AudioTurn, InterruptPlayback,
                                             ResetHistory, StopWorker, TextTurn)
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.echo import EchoReport
from stream_omni_ros.engine.event_queue import CallbackErrors, EventQueue, start_dispatcher
from stream_omni_ros.engine.audio_watchdog import AudioWatchdog
from stream_omni_ros.engine.events import (CANCEL_AUDIO_LOST, CANCEL_BARGE_IN, CANCEL_REQUESTED,
                                           CANCEL_RESET, CANCEL_STOP, STATE_IDLE, STATE_LISTENING,
                                           STATE_SPEAKING, STATE_USER_SPEAKING, EngineEvent,
                                           InputWarning)
from stream_omni_ros.engine.image_buffer import ImageBuffer, StampedImage, any_image_to_rgb
from stream_omni_ros.engine.listener import (Listener, ListenerCommand, TurnExtras,
                                             UtteranceEnded)
from stream_omni_ros.engine.responder import Responder, TurnOptions
from stream_omni_ros.engine.vad import Endpointer, SileroVad
from stream_omni_ros.engine.worker import TurnWorker
from stream_omni_ros.engine.worker_state import WorkerHandle
from stream_omni_ros.errors import InputError, InputReason, StreamOmniError
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

logger = logging.getLogger(__name__)


def samples_to_utterance(samples_16k_mono: np.ndarray) -> np.ndarray:
    """Validate a complete utterance given as audio; return it as contiguous float32 [N]."""
    if not isinstance(samples_16k_mono, np.ndarray):
        raise InputError(f"utterance audio has type {type(samples_16k_mono).__name__}; "
                         "expected a numpy array of 16 kHz mono samples")
    if samples_16k_mono.ndim != 1 or samples_16k_mono.size == 0:
        raise InputError(f"utterance audio has shape {samples_16k_mono.shape}; expected [N] "
                         "with N > 0 (16 kHz mono)")
    if not np.issubdtype(samples_16k_mono.dtype, np.floating):
        raise InputError(f"utterance audio has dtype {samples_16k_mono.dtype}; expected float "
                         "samples in [-1, 1]")
    if not np.isfinite(samples_16k_mono).all():
        raise InputError("utterance audio contains NaN or infinite samples; expected finite "
                         "floats in [-1, 1]", InputReason.NOT_FINITE)
    return np.ascontiguousarray(np.clip(samples_16k_mono, -1.0, 1.0), np.float32)


class ConversationEngine:
    """Listens, takes turns and answers through a Responder; see the module docstring."""

    def __init__(self, responder: Responder, config: EngineConfig | None = None, *,
                 speech_probability: Callable[[np.ndarray], float] | None = None,
                 callback: Callable[[EngineEvent], None] | None = None,
                 clock: Callable[[], float] = time.time,
                 playback_clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or EngineConfig()
        self._clock = clock  # stamps: text turns, push-to-talk presses, unstamped audio
        self._stopped = False
        self._events = EventQueue(self.config.conversation.max_pending_events)
        self.images = ImageBuffer(self.config.image, clock)
        self._turn_ids = itertools.count(1)
        self._last_turn_id = 0
        self._audio_lock = threading.Lock()
        self._state_lock = threading.Lock()
        endpointer = Endpointer(self.config.vad, speech_probability or SileroVad())
        self._listener = Listener(self.config, endpointer, self._new_turn_id, clock)
        self._watchdog = AudioWatchdog()
        self._commands: queue.Queue = queue.Queue()
        self._handle = WorkerHandle(playback_clock)  # speaker time: when the answer ends
        self._release_timer: threading.Timer | None = None
        self._worker = TurnWorker(responder, self.config, self._handle, self._events, self.images)
        self._thread = threading.Thread(target=self._worker.run, args=(self._commands,),
                                        name="stream-omni-worker", daemon=True)
        self._thread.start()
        self._dispatcher = None
        self.callback_errors = CallbackErrors()  # kept, not reported: a report would loop back
        if callback is not None:
            self._dispatcher = start_dispatcher(self._events, callback, self.callback_errors.add)

    # -- input ---------------------------------------------------------------------------------

    def feed_audio(self, chunk: PcmChunk) -> bool:
        """Process a microphone chunk: False if ignored (not listening); raises InputError (and
        keeps going) on a bad chunk."""
        self._check_running()
        with self._audio_lock:  # held while submitting too: commands keep the audio's order
            if not self._listener.listening:
                return False
            commands, warnings = self._listener.feed(
                chunk, self._handle.responding(), self._handle.state() == STATE_SPEAKING)
            self._watchdog.heard(self._clock())
            for warning in warnings:
                self._events.put(warning)
            self._submit(commands)
        return True

    def feed_played(self, chunk: PcmChunk, last: bool = False) -> None:
        """Store audio the speaker played (stamp: reached the device), the echo reference;
        `last`: the player's queue ran dry with this chunk."""
        self._check_running()
        with self._audio_lock:
            for warning in self._listener.add_played(chunk, last):
                self._events.put(warning)

    @property
    def echo_stats(self):
        """The canceller's energy before and after (EchoStats), for diagnostics and tests."""
        return self._listener.echo.stats

    def echo_report(self) -> EchoReport:
        """The echo canceller now: reference live, frames cancelled, recent ERLE."""
        # Without the audio lock: a diagnostics timer that waits for a chunk being processed
        # keeps its callback group busy, and rclpy's executor spins while a ready timer waits.
        return self._listener.echo.report(self._clock())

    def feed_image(self, rgb: np.ndarray, stamp: float, frame_id: str = "") -> None:
        """Store a camera frame; raises InputError on a bad image or stamp."""
        self.images.add(rgb, stamp, frame_id)
        stale = self.images.take_discarded()
        if stale:
            self._events.put(InputWarning(None, "image_clock_step", (
                f"{stale} kept camera frames were stamped after the clock, which stepped back; "
                "they were dropped")))

    def request_turn(self, text: str | None = None, options: TurnOptions | None = None,
                     image: np.ndarray | None = None, image_stamp: float | None = None
                     ) -> int | None:
        """Answer `text` now (returns its turn id), or with no text arm listening (on_request).

        `options` override the configured behaviour for this turn; an explicit `image` (RGB
        uint8, stamped `image_stamp` or now) is used instead of the camera buffer.
        """
        self._check_running()
        extras = self._extras(options, image, image_stamp)
        if text is None:
            with self._audio_lock:
                self._listener.arm(extras)
            return None
        turn_id = self._new_turn_id()
        self._handle.begin_responding(turn_id)
        self._commands.put(TextTurn(turn_id, text, self._clock(), time.monotonic(),
                                    extras.options, extras.image))
        return turn_id

    def open_turn(self, options: TurnOptions | None = None, image: np.ndarray | None = None,
                  image_stamp: float | None = None, stamp: float | None = None) -> int | None:
        """Push-to-talk pressed at `stamp` (default now): audio stamped from then on is the
        utterance (interrupts the robot if barge_in)."""
        self._check_running()
        extras = self._extras(options, image, image_stamp)
        given = options is not None or image is not None  # else keep what arming asked for
        pressed = self._clock() if stamp is None else float(stamp)
        with self._audio_lock:
            self._submit(self._listener.open_turn(self._handle.responding(), pressed,
                                                  extras if given else None))
            self._watchdog.heard(self._clock())  # the wait for audio starts at the press
            return self._listener.turn_id

    def submit_audio_turn(self, samples_16k_mono: np.ndarray,
                          options: TurnOptions | None = None, image: np.ndarray | None = None,
                          image_stamp: float | None = None) -> int:
        """Answer a complete utterance given as 16 kHz mono audio; returns its turn id.

        The audio skips the microphone front end and VAD, so a live microphone stream (and an
        utterance in progress on it) is not touched; the turn queues like a text turn.
        """
        self._check_running()
        audio = samples_to_utterance(samples_16k_mono)
        extras = self._extras(options, image, image_stamp)
        limit = int(self.config.vad.max_utterance_s * MODEL_SAMPLE_RATE)
        end_stamp = self._clock()
        turn_id = self._new_turn_id()
        self._handle.begin_responding(turn_id)
        self._commands.put(AudioTurn(turn_id, audio[:limit],
                                     end_stamp - len(audio) / MODEL_SAMPLE_RATE, end_stamp,
                                     time.monotonic(), extras.options, extras.image,
                                     truncated=len(audio) > limit))
        return turn_id

    def close_turn(self, stamp: float | None = None) -> None:
        """Push-to-talk released at `stamp` (default now): answer the utterance as soon as the
        audio stamped up to the release has arrived, or after listen.late_audio_wait_s."""
        released = self._clock() if stamp is None else float(stamp)
        with self._audio_lock:
            self._submit(self._listener.close_turn(released))
            waiting = self._listener.waiting_turn
        if waiting is not None:
            self._wait_for_late_audio(waiting)

    def check_audio_watchdog(self, now: float | None = None) -> int | None:
        """Abandon the utterance if no audio came for audio.stall_timeout_s; its turn id or None.

        Call it periodically (omni_node does, every state_period_s); `now` defaults to the
        engine clock. The microphone stream is reset, and the turn ends with TurnCancelled
        (reason audio_lost) after an InputWarning of kind audio_lost.
        """
        now = self._clock() if now is None else now
        with self._audio_lock:
            silent_s = self._watchdog.silent_for(now)
            if self._listener.turn_id is None or silent_s < self.config.audio.stall_timeout_s:
                return None
            turn_id = self._listener.reset()
        self._events.put(InputWarning(turn_id, CANCEL_AUDIO_LOST, (
            f"no microphone audio for {silent_s:.1f} s in the middle of an utterance "
            f"(audio.stall_timeout_s {self.config.audio.stall_timeout_s}): abandoned")))
        self._commands.put(Abandoned(turn_id, CANCEL_AUDIO_LOST))
        return turn_id

    # -- control -------------------------------------------------------------------------------

    def set_listening(self, listening: bool) -> None:
        """Hear the microphone or ignore it; turning it off drops an utterance being heard.

        Requests (text, goal audio) are answered either way; only feed_audio is ignored.
        """
        with self._audio_lock:
            self._listener.listening = bool(listening)
            talking = self._listener.turn_id is not None
        if not listening and talking:
            self.cancel()  # the half-heard utterance would otherwise never end

    @property
    def listening(self) -> bool:
        """Whether microphone chunks are heard (set_listening)."""
        return self._listener.listening

    def cancel(self) -> None:
        """Stop the current turn and any queued one; drop their unplayed audio."""
        self._interrupt(CANCEL_REQUESTED, reset_stream=False)

    def cancel_turn(self, turn_id: int) -> None:
        """Stop this turn only (heard, queued or running) and drop its unplayed audio."""
        with self._audio_lock:
            heard = self._listener.turn_id == turn_id
            abandoned = self._listener.abandon() if heard else None
        self._handle.cancel_one(turn_id, CANCEL_REQUESTED)
        if abandoned is not None:
            self._commands.put(Abandoned(abandoned, CANCEL_REQUESTED))
        self._commands.put(InterruptPlayback(turn_id, CANCEL_REQUESTED))

    def reset(self) -> None:
        """Cancel everything and forget the conversation history and the audio stream."""
        self._interrupt(CANCEL_RESET, reset_stream=True)
        self._commands.put(ResetHistory())

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel everything, end the worker thread and close the event stream."""
        self._stopped = True
        if self._release_timer is not None:
            self._release_timer.cancel()
        self._interrupt(CANCEL_STOP, reset_stream=True)
        self._commands.put(StopWorker())
        self._thread.join(timeout)
        self._events.close()
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop, then let the responder free its memory (model weights, device caches)."""
        self.stop(timeout)
        if self._thread.is_alive():  # the model is still in use: freeing it would crash the turn
            logger.warning("the model worker did not stop within %s s; the responder was not "
                           "closed", timeout)
            return
        self._worker.close_responder()

    def reconfigure(self, config: EngineConfig) -> None:
        """Apply new settings live (listen mode, barge-in, VAD, prompt, speech, camera).

        Sizes fixed at construction (event queue, image buffer length, history bounds) keep
        their values until the engine is rebuilt.
        """
        with self._audio_lock:
            self._listener.apply_config(config)
        self._worker.config = config  # read once per command by the worker
        self.images.config = dataclasses.replace(self.images.config,
                                                 max_age_s=config.image.max_age_s)
        self.config = config

    def __enter__(self) -> "ConversationEngine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- output --------------------------------------------------------------------------------

    def events(self) -> Iterator[EngineEvent]:
        """Iterate over events in order until the engine is stopped."""
        return iter(self._events)

    def get_event(self, timeout: float | None = None) -> EngineEvent | None:
        """Next event, or None after timeout."""
        return self._events.get(timeout)

    @property
    def state(self) -> str:
        """idle | listening | user_speaking | thinking | speaking."""
        if self._listener.turn_id is not None:
            return STATE_USER_SPEAKING
        state = self._handle.state()
        waiting = self.config.listen.mode == "always" or self._listener.armed
        if state == STATE_IDLE and waiting and self._listener.listening:
            return STATE_LISTENING
        return state

    @property
    def utterance_turn(self) -> int | None:
        """The turn of the utterance being recorded now; None while nobody speaks."""
        return self._listener.turn_id

    def wait_handled(self) -> None:
        """Block until the worker has handled every command submitted so far.

        A simulation that advances its clock only after this runs the engine in lockstep: the
        same audio gives the same turns, whatever the machine's load.
        """
        with self._commands.all_tasks_done:
            while self._commands.unfinished_tasks and self._thread.is_alive():
                self._commands.all_tasks_done.wait(0.1)

    @property
    def dropped_events(self) -> int:
        """Events dropped because nobody read them (queue full)."""
        return self._events.dropped

    # -- internals -----------------------------------------------------------------------------

    def _check_running(self) -> None:
        if self._stopped:
            raise StreamOmniError("the conversation engine was stopped; create a new one")

    def _extras(self, options: TurnOptions | None, image: np.ndarray | None,
                image_stamp: float | None) -> TurnExtras:
        """Validate a request's options and explicit image (InputError in the caller's thread)."""
        if options is not None and not isinstance(options, TurnOptions):
            raise InputError(f"turn options have type {type(options).__name__}; expected "
                             "TurnOptions or None")
        stamped = None
        if image is not None:
            stamp = self._clock() if image_stamp is None else float(image_stamp)
            stamped = StampedImage(any_image_to_rgb(image), stamp)
        return TurnExtras(options or TurnOptions(), stamped)

    def _new_turn_id(self) -> int:
        with self._state_lock:
            self._last_turn_id = next(self._turn_ids)
            return self._last_turn_id

    def _submit(self, commands: list[ListenerCommand]) -> None:
        for command in commands:
            if getattr(command, "barge_in", False):
                self._handle.cancel_through(command.turn_id - 1, CANCEL_BARGE_IN)
                self._commands.put(self._handle.playback_interrupt(CANCEL_BARGE_IN))
            if isinstance(command, UtteranceEnded):
                self._handle.begin_responding(command.turn_id)
            self._commands.put(command)

    def _wait_for_late_audio(self, turn_id: int) -> None:
        """Answer a released turn after listen.late_audio_wait_s even if audio is missing."""
        if self._release_timer is not None:
            self._release_timer.cancel()  # one released turn waits at a time
        timer = threading.Timer(self.config.listen.late_audio_wait_s, self._expire_release,
                                (turn_id,))
        timer.daemon = True
        self._release_timer = timer
        timer.start()

    def _expire_release(self, turn_id: int) -> None:
        with self._audio_lock:
            if self._stopped:
                return
            commands, warnings = self._listener.expire_release(turn_id)
            for warning in warnings:
                self._events.put(warning)
            self._submit(commands)

    def _interrupt(self, reason: str, reset_stream: bool) -> None:
        with self._audio_lock:
            if reset_stream:
                abandoned = self._listener.reset()
            else:
                abandoned = self._listener.abandon()
        with self._state_lock:
            last = self._last_turn_id
        self._handle.cancel_through(last, reason)
        if abandoned is not None:
            self._commands.put(Abandoned(abandoned, reason))
        self._commands.put(self._handle.playback_interrupt(reason))
