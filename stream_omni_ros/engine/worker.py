"""The model worker: the only thread that calls the Responder; runs turns, emits their events."""
from __future__ import annotations

import dataclasses
import queue
from typing import Union

import numpy as np

from stream_omni_ros.engine.commands import (Abandoned, AudioTurn, InterruptPlayback,
                                             ResetHistory, StopWorker, TextTurn)
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.event_queue import EventQueue
from stream_omni_ros.engine.events import (CANCEL_ERROR, SOURCE_PUSH_TO_TALK, SOURCE_TEXT,
                                           EngineError, InputWarning, ResponseDelta, SpeechChunk,
                                           SpeechInterrupted, TranscriptFinal, TranscriptPartial,
                                           TurnCancelled, TurnFinished, TurnStarted)
from stream_omni_ros.engine.history import ConversationHistory
from stream_omni_ros.engine.image_buffer import ImageBuffer, StampedImage
from stream_omni_ros.engine.listener import UtteranceBegan, UtteranceEnded, UtterancePartial
from stream_omni_ros.engine.responder import (AudioPiece, Done, Responder, ResponderOutput,
                                              TextPiece, Transcript, TurnOptions,
                                              TurnRequest)
from stream_omni_ros.engine.turn import TurnTracker
from stream_omni_ros.engine.worker_state import WorkerHandle
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

SpokenTurn = Union[UtteranceEnded, AudioTurn]  # a turn answered from audio
FramePick = tuple[StampedImage | None, str]  # the frame a turn uses, or why there is none


class TurnWorker:
    """Consumes commands in order; answers turns with the Responder."""

    def __init__(self, responder: Responder, config: EngineConfig, handle: WorkerHandle,
                 events: EventQueue, images: ImageBuffer) -> None:
        self._responder = responder
        self.config = config
        self._handle = handle
        self._events = events
        self._images = images
        self._start_frame: tuple[int, FramePick] | None = None  # (turn id, speech-start pick)
        conversation = config.conversation
        self.history = ConversationHistory(conversation.max_turns,
                                           conversation.max_history_tokens,
                                           responder.count_tokens)

    def run(self, commands: queue.Queue) -> None:
        """Worker loop: process commands until StopWorker."""
        while True:
            batch = [commands.get()]
            while not commands.empty():
                batch.append(commands.get_nowait())
            for index, command in enumerate(batch):
                if isinstance(command, StopWorker):
                    return
                try:
                    if not self._superseded(command, batch[index + 1:]):
                        self._dispatch(command)
                except Exception as error:  # a failing turn must not end the worker
                    self._report(command, error)
                finally:
                    commands.task_done()  # ConversationEngine.wait_handled counts on it

    def close_responder(self) -> None:
        """Let the responder free its memory (once run() has returned)."""
        self._responder.close()

    def _report(self, command: object, error: Exception) -> None:
        turn_id = getattr(command, "turn_id", None)
        self._events.put(EngineError(turn_id, type(error).__name__, str(error)))
        # a failed answer ends its turn; a failed partial or prefill leaves the turn running
        if isinstance(command, (UtteranceEnded, TextTurn, AudioTurn)):
            unplayed = self._handle.stop_playback(turn_id)
            self._handle.end_responding(turn_id)  # before the event: readers see it ended
            self._events.put(TurnCancelled(turn_id, CANCEL_ERROR, unplayed))

    @staticmethod
    def _superseded(command: object, later: list) -> bool:
        # only the newest partial transcript of an utterance is worth computing
        return isinstance(command, UtterancePartial) and any(
            getattr(c, "turn_id", None) == command.turn_id for c in later)

    def _dispatch(self, command: object) -> None:
        if isinstance(command, UtteranceBegan):
            self._on_began(command)
        elif isinstance(command, UtterancePartial):
            if self._handle.cancel_reason(command.turn_id) is None:
                text = self._responder.transcribe_partial(command.audio)
                self._events.put(TranscriptPartial(command.turn_id, text,
                                                   len(command.audio) / MODEL_SAMPLE_RATE,
                                                   command.audio_frame_id))
        elif isinstance(command, UtteranceEnded):
            self._on_utterance(command)
        elif isinstance(command, AudioTurn):
            # a delimited utterance, like a push-to-talk one, that never passed the listener
            self._events.put(TurnStarted(command.turn_id, SOURCE_PUSH_TO_TALK,
                                         command.start_stamp))
            self._on_utterance(command)
        elif isinstance(command, TextTurn):
            self._events.put(TurnStarted(command.turn_id, SOURCE_TEXT, command.stamp))
            request = self._request(None, command.text, command.options)
            self._run_turn(command.turn_id, request, command.request_time, command.stamp,
                           image=command.image)
        elif isinstance(command, Abandoned):
            self._events.put(TurnCancelled(command.turn_id, command.reason, 0.0))
        elif isinstance(command, InterruptPlayback):
            self._interrupt_playback(command)
        elif isinstance(command, ResetHistory):
            self.history.clear()
            self._responder.reset()

    def _on_began(self, command: UtteranceBegan) -> None:
        self._events.put(TurnStarted(command.turn_id, command.source, command.start_stamp))
        image = None
        if self.config.image.frame_at == "speech_start":
            pick = self._pick_image(command.start_stamp, command.options, command.image)
            self._start_frame = (command.turn_id, pick)
            image = None if pick[0] is None else pick[0].rgb
        if self.config.conversation.early_prefill:
            self._responder.prepare(self.history.turns, self.config.conversation.system_prompt,
                                    image)

    def _on_utterance(self, command: SpokenTurn) -> None:
        if command.truncated:
            limit = self.config.vad.max_utterance_s
            self._events.put(InputWarning(command.turn_id, "max_utterance",
                                          f"utterance cut at vad.max_utterance_s = {limit} s"))
        request = self._request(command.audio, None, command.options)
        self._run_turn(command.turn_id, request, command.endpoint_time, command.end_stamp,
                       command, command.image)

    def _request(self, audio, text: str | None, options: TurnOptions) -> TurnRequest:
        conversation = self.config.conversation
        speak = conversation.speak if options.speak is None else options.speak
        return TurnRequest(audio, text, None, self.history.turns, conversation.system_prompt,
                           speak, options)

    def _interrupt_playback(self, command: InterruptPlayback) -> None:
        if command.turn_id is None:
            return
        purged = self._events.purge(
            lambda e: isinstance(e, SpeechChunk) and e.turn_id == command.turn_id)
        unplayed = self._handle.stop_playback(command.turn_id)
        if unplayed > 0 or purged:
            self._events.put(SpeechInterrupted(command.turn_id, command.reason, unplayed))

    def _run_turn(self, turn_id: int, request: TurnRequest, endpoint_time: float,
                  end_stamp: float | None, utterance: SpokenTurn | None = None,
                  image: StampedImage | None = None) -> None:
        try:
            cancel = self._handle.cancel_reason(turn_id)
            if cancel is not None:
                self._handle.end_responding(turn_id)
                self._events.put(TurnCancelled(turn_id, cancel, 0.0))
                return
            frame, image_note = self._turn_image(turn_id, end_stamp, request.options, image)
            request = dataclasses.replace(request, image=None if frame is None else frame.rgb)
            tracker = TurnTracker(turn_id, endpoint_time, request.text or "")
            if request.text is not None:
                tracker.on_transcript(request.text)
                self._events.put(TranscriptFinal(turn_id, request.text, end_stamp, end_stamp))
            reason, cancel = self._generate(tracker, request, utterance)
            if cancel is not None:
                self._cancelled(tracker, cancel)
                return
            if tracker.response:
                self.history.add(tracker.transcript, tracker.response)
            # ended before the event is seen, so that a reader of TurnFinished finds the engine
            # no longer thinking about this turn
            self._handle.end_responding(turn_id)
            self._events.put(TurnFinished(
                turn_id, tracker.transcript, tracker.response, reason, tracker.metrics(),
                None if frame is None else frame.stamp, image_note,
                "" if frame is None else frame.frame_id))
        finally:
            self._handle.end_responding(turn_id)

    def _turn_image(self, turn_id: int, end_stamp: float | None, options: TurnOptions,
                    explicit: StampedImage | None) -> FramePick:
        """The frame taken at this turn's speech start if there was one, else nearest its end."""
        start_frame = self._start_frame
        if start_frame is not None and start_frame[0] == turn_id:
            self._start_frame = None
            if start_frame[1][0] is not None:  # else: no usable frame then, try the end
                return start_frame[1]
        return self._pick_image(end_stamp, options, explicit)

    def _pick_image(self, stamp: float | None, options: TurnOptions,
                    explicit: StampedImage | None) -> FramePick:
        if explicit is not None:
            return explicit, ""
        if options.use_camera is False:
            return None, "the turn's options disable the camera"
        if options.use_camera is None and not self.config.conversation.use_camera:
            return None, "conversation.use_camera is false"
        if stamp is None:
            return None, "utterance time unknown"
        lookup = self._images.nearest(stamp)
        return lookup.image, lookup.reason

    def _generate(self, tracker: TurnTracker, request: TurnRequest,
                  utterance: SpokenTurn | None) -> tuple[str, str | None]:
        """Run the responder; return (end reason, cancel reason or None)."""
        outputs = iter(self._responder.begin_turn(request))
        try:
            for output in outputs:
                # checked between responder steps: a cancel costs at most one more step
                cancel = self._handle.cancel_reason(tracker.turn_id)
                if cancel is not None:
                    return "", cancel
                self._emit(tracker, output, utterance)
                if isinstance(output, Done):
                    return output.reason, None
        finally:
            if hasattr(outputs, "close"):  # generators release model state when closed
                outputs.close()
        return "end_of_output", None

    def _emit(self, tracker: TurnTracker, output: ResponderOutput,
              utterance: SpokenTurn | None) -> None:
        turn_id = tracker.turn_id
        if isinstance(output, Transcript):
            tracker.on_transcript(output.text)
            start, end = (utterance.start_stamp, utterance.end_stamp) if utterance else (None,
                                                                                          None)
            truncated = bool(utterance and utterance.truncated)
            frame_id = utterance.audio_frame_id if utterance else ""
            self._events.put(TranscriptFinal(turn_id, output.text, start, end, truncated,
                                             frame_id))
        elif isinstance(output, TextPiece):
            tracker.on_text(output.text)
            self._events.put(ResponseDelta(turn_id, output.delta, output.text))
        elif isinstance(output, AudioPiece):
            seconds = len(output.pcm) / output.sample_rate
            index = tracker.on_audio(seconds, output.sample_rate)
            self._handle.note_audio(turn_id, seconds)
            self._events.put(SpeechChunk(turn_id, output.pcm, output.sample_rate, index))
        elif isinstance(output, Done):
            tracker.text_tokens = output.text_tokens
            if tracker.chunk_index:
                # an empty last chunk tells a sink that this turn's audio is complete
                self._events.put(SpeechChunk(turn_id, np.zeros(0, np.float32),
                                             tracker.sample_rate, tracker.chunk_index, True))

    def _cancelled(self, tracker: TurnTracker, reason: str) -> None:
        self._events.purge(lambda e: isinstance(e, SpeechChunk) and e.turn_id == tracker.turn_id)
        unplayed = self._handle.stop_playback(tracker.turn_id)
        self._handle.end_responding(tracker.turn_id)
        self._events.put(TurnCancelled(tracker.turn_id, reason, unplayed))
