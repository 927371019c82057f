"""The omni_node's private services: each request becomes one engine call."""
from __future__ import annotations

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from std_srvs.srv import SetBool, Trigger

from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import STATE_SPEAKING, STATE_THINKING
from stream_omni_ros.nodes.omni_diagnostics import InputCounters


class ConversationServices:
    """`~/reset_conversation`, `~/set_listening`, `~/push_to_talk`, `~/stop_speaking`."""

    def __init__(self, node: Node, engine: ConversationEngine, counters: InputCounters) -> None:
        self._node, self._engine, self._counters = node, engine, counters
        group = MutuallyExclusiveCallbackGroup()
        self._services = [
            node.create_service(SetBool, "~/push_to_talk", self._push_to_talk,
                                callback_group=group),
            node.create_service(Trigger, "~/reset_conversation", self._reset,
                                callback_group=group),
            node.create_service(SetBool, "~/set_listening", self._set_listening,
                                callback_group=group),
            node.create_service(Trigger, "~/stop_speaking", self._stop_speaking,
                                callback_group=group)]

    def destroy(self) -> None:
        """Stop serving (on deactivate)."""
        for service in self._services:
            self._node.destroy_service(service)
        self._services.clear()
        self._engine = None  # the executor may hold destroyed services' callbacks a while

    def _reset(self, _: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self._engine.reset()
        response.success, response.message = True, "conversation history cleared"
        return response

    def _set_listening(self, request: SetBool.Request,
                       response: SetBool.Response) -> SetBool.Response:
        self._engine.set_listening(bool(request.data))
        response.success = True
        response.message = "listening" if request.data else "not listening to audio/in"
        return response

    def _push_to_talk(self, request: SetBool.Request,
                      response: SetBool.Response) -> SetBool.Response:
        mode = self._engine.config.listen.mode
        if mode != "push_to_talk":
            self._counters.add("push_to_talk.refused")
            response.success = False
            response.message = (f"listen.mode is {mode!r}; ~/push_to_talk needs listen.mode "
                                 "push_to_talk")
            self._node.get_logger().warning(  # a stuck button must not flood the log
                response.message, throttle_duration_sec=self._node.settings.log_throttle_s)
            return response
        # press and release are taken now on the node clock; the utterance is the audio/in
        # samples stamped between them, however late they arrive (listen.late_audio_wait_s)
        if request.data:
            turn_id = self._engine.open_turn()
            response.message = f"talking: turn {turn_id}"
        else:
            self._engine.close_turn()
            response.message = "released: answering"
        response.success = True
        return response

    def _stop_speaking(self, _: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        was = self._engine.state
        self._engine.cancel()
        response.success = True
        response.message = f"stopped ({was})" if was in (STATE_THINKING, STATE_SPEAKING) else \
            f"nothing to stop ({was})"
        return response

