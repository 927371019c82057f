"""omni_node: the Stream-Omni assistant as a ROS 2 lifecycle node.

configure reads the parameters, loads the model and builds the ConversationEngine (one worker
thread owns the model), activate opens the topics, the `~/converse` action and the services,
deactivate stops listening, ends every Converse goal with a result and cancels the turn, cleanup
closes the engine, whose responder frees the model. A transition that raises anything is logged
with its traceback, reported in /diagnostics and fails, leaving the node where it was (configure
can be retried). A MultiThreadedExecutor keeps camera and audio flowing during a turn; the
engine's event thread hands every engine event, in order, to one callback that publishes and
routes it. SIGINT/SIGTERM cancel the turn, then release the model (nodes/node_process.py).
The node's parts talk to the engine only, never to each other.
"""
from __future__ import annotations

import gc
import logging
import time
import traceback
import weakref
from dataclasses import dataclass
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import (STATE_IDLE, STATE_LISTENING, STATE_UNLOADED,
                                           EngineError, EngineEvent, InputWarning, TurnFinished)
from stream_omni_ros.engine.runtime_config import (RuntimeConfig, load_responder,
                                                   runtime_on_usable_device)
from stream_omni_ros.errors import StreamOmniError
from stream_omni_ros.nodes.conversions import IMAGE_DECODER
from stream_omni_ros.nodes.node_process import exit_process, spin_node
from stream_omni_ros.nodes.omni_action import ConverseServer, TurnRouter
from stream_omni_ros.nodes.omni_config import RUNTIME_SAFE_ENGINE_FIELDS, OmniNodeConfig
from stream_omni_ros.nodes.omni_diagnostics import (InputCounters, NodeSnapshot, PythonLogToRos,
                                                    process_memory_mb, snapshot_to_diagnostics)
from stream_omni_ros.nodes.omni_inputs import InputAdapter
from stream_omni_ros.nodes.omni_publishers import EventPublisher, StatePublisher
from stream_omni_ros.nodes.omni_services import ConversationServices
from stream_omni_ros.nodes.params import LiveConfig, declare_config

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass
class ActiveParts:
    """What exists only while the node is active."""

    inputs: InputAdapter
    publisher: EventPublisher
    services: ConversationServices

    def destroy(self) -> None:
        """Close subscriptions, services and publishers."""
        for part in (self.inputs, self.services, self.publisher):
            part.destroy()


def holders_of(obj: object, most: int = 4) -> str:
    """Type names of what still references `obj`, so a leak names its holder in the log."""
    names = sorted({type(ref).__name__ for ref in gc.get_referrers(obj)} - {"frame"})
    return ", ".join(names[:most]) or "nothing but this check"


def transition_error_to_text(transition: str, error: BaseException) -> str:
    """One line naming the failed transition, the exception and a hint where one helps."""
    hint = ""
    if "out of memory" in str(error).lower():
        hint = " (try quantization 8bit/4bit or a smaller dtype)"
    elif isinstance(error, ModuleNotFoundError):
        hint = " (a required Python package is not installed)"
    return f"{transition} failed: {type(error).__name__}: {error}{hint}"


class OmniNode(LifecycleNode):
    """Stream-Omni lifecycle node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__("omni_node")
        self.settings = declare_config(self, OmniNodeConfig)
        # Model and engine-size parameters may be set while unconfigured; configure reads them.
        self.runtime_params = LiveConfig(self, RuntimeConfig, reconfigurable=self._unconfigured)
        self.live = LiveConfig(self, EngineConfig, runtime_safe=RUNTIME_SAFE_ENGINE_FIELDS,
                               on_change=self._reconfigure, reconfigurable=self._unconfigured)
        self.runtime = self.runtime_params.value
        self.counters, self.router = InputCounters(), TurnRouter()
        self.engine: ConversationEngine | None = None
        self.active: ActiveParts | None = None
        self.converse: ConverseServer | None = None  # from the first activate until cleanup
        self._model_ref: weakref.ref | None = None  # the responder: it holds the model
        self.last_error, self.last_metrics = "", None
        self.state = StatePublisher(self)
        package_log = logging.getLogger("stream_omni_ros")
        package_log.setLevel(logging.INFO)
        package_log.addHandler(PythonLogToRos(self.get_logger()))
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Steady timers: reporting and autostart must run even before a sim /clock ticks.
        group, steady = MutuallyExclusiveCallbackGroup(), Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(self.settings.state_period_s, self._publish_state, group, steady)
        self.create_timer(self.settings.diagnostics_period_s, self._publish_diagnostics, group,
                          steady)
        if self.settings.autostart:
            self._autostart = self.create_timer(0.0, self._start,
                                                MutuallyExclusiveCallbackGroup(), steady)

    def now_s(self) -> float:
        """Node-clock seconds (simulation time under use_sim_time)."""
        return self.get_clock().now().nanoseconds * 1e-9

    def lifecycle_state(self) -> str:
        """The lifecycle state as the state machine has it (configuring, inactive, ...)."""
        return self._state_machine.current_state[1]

    def _unconfigured(self) -> bool:
        return self.lifecycle_state() == "unconfigured"

    def _start(self) -> None:
        self._autostart.cancel()
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def _transition(self, name: str, body: Callable[[], None],
                    undo: Callable[[], None] | None = None) -> TransitionCallbackReturn:
        """Run a transition; any exception is logged, counted, kept in last_error: FAILURE.

        FAILURE returns the node to the state it started from (unconfigured for configure), so
        the transition can be retried; `undo` first releases what the body had built.
        """
        try:
            body()
        except Exception as error:  # every kind: rclpy would swallow it without a word
            self.last_error = transition_error_to_text(name, error)
            self.counters.add(f"lifecycle.failed.{name}")
            self.get_logger().error(f"{self.last_error}\n{traceback.format_exc()}")
            if undo is not None:
                self._undo(name, undo)
            return FAILURE
        return SUCCESS

    def _undo(self, name: str, undo: Callable[[], None]) -> None:
        try:
            undo()
        except Exception as error:  # keep the first error in last_error; log this one too
            self.get_logger().error(f"undoing the failed {name} failed too: {error!r}\n"
                                    f"{traceback.format_exc()}")

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Read the parameters, load the model, start the engine; on failure stay unconfigured."""
        return self._transition("configure", self._configure, self._release)

    def _configure(self) -> None:
        # the device the model really runs on, for the log and /diagnostics (cpu without a GPU)
        self.runtime = runtime = runtime_on_usable_device(self.runtime_params.value)
        self.get_logger().info(f"configuring: responder {runtime.responder}, model.path "
                               f"{runtime.model.path!r}, cosyvoice.path "
                               f"{runtime.cosyvoice.path!r}")
        responder = load_responder(runtime)
        # The answer plays on the speaker's clock: steady time for a sound card, the simulation
        # clock for a simulated speaker (doc/architecture.md §5.2)
        sim_time = bool(self.get_parameter("use_sim_time").value)
        self.engine = ConversationEngine(responder, self.live.value, clock=self.now_s,
                                         playback_clock=self.now_s if sim_time else time.monotonic,
                                         callback=self._deliver)
        self.engine.set_listening(False)  # until activate opens audio/in
        self._model_ref = weakref.ref(responder)
        self.last_error = ""
        self.get_logger().info(f"responder {runtime.responder} loaded on {runtime.device}; "
                               f"process memory {process_memory_mb():.0f} MiB; images decoded "
                               f"by {IMAGE_DECODER}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open topics, the action and the services."""
        result = self._transition("activate", self._activate, self._deactivate)
        return super().on_activate(state) if result == SUCCESS else result

    def _activate(self) -> None:
        engine = self.engine
        if engine is None:
            raise StreamOmniError("no engine to serve; expected a completed configure")
        built: list = []  # closed again if a later part fails
        try:
            publisher = EventPublisher(self, self.settings.audio_out)
            built.append(publisher)
            services = ConversationServices(self, engine, self.counters)
            built.append(services)
            # Listening before audio/in opens: the executor runs callbacks on other threads, so
            # a chunk that arrives once the subscription exists must find the engine listening.
            engine.set_listening(True)
            inputs = InputAdapter(self, engine, self.settings, self.counters,
                                  self._publish_state)
        except Exception:
            engine.set_listening(False)
            for part in reversed(built):
                part.destroy()
            raise
        self.active = ActiveParts(inputs, publisher, services)
        if self.converse is None:
            self.converse = ConverseServer(self, engine, self.router, self.now_s, self.counters)
        self.converse.open()
        self.last_error = ""

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening, end every Converse goal with a result, cancel the turn."""
        result = self._transition("deactivate", self._deactivate)
        return super().on_deactivate(state) if result == SUCCESS else result

    def _deactivate(self) -> None:
        converse = self.converse
        if converse is not None:
            converse.close("omni_node was deactivated")  # first, so a goal cut now says why
        if self.engine is not None:
            self.engine.set_listening(False)
            self.engine.cancel()
        if converse is not None and not converse.wait_ended():
            self.get_logger().error("a Converse goal did not end in time on deactivate")
        active, self.active = self.active, None
        if active is not None:
            active.destroy()

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the engine and free the model (and the CUDA cache)."""
        return self._transition("cleanup", self._cleanup)

    def _cleanup(self, flush: bool = True) -> None:
        converse, self.converse = self.converse, None
        if converse is not None:
            converse.destroy(flush)
        self._release()

    def on_shutdown(self, state: LifecycleState | None) -> TransitionCallbackReturn:
        """Release everything on the way out (state None: called after the executor ended)."""
        self._transition("deactivate", self._deactivate)
        return self._transition("shutdown", lambda: self._cleanup(flush=state is not None))

    def stop_work(self) -> None:
        """Process exit, first step: cancel the turn, so that a Converse goal ends with it."""
        if self.engine is not None:
            self.engine.cancel()

    def finish(self) -> None:
        """Process exit, once no callback runs: release everything."""
        self.on_shutdown(None)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover to unconfigured after a transition raised (the node can be configured)."""
        self._transition("deactivate", self._deactivate)
        return self._transition("cleanup", self._cleanup)

    def _release(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.close()  # its responder frees the model and the device cache
        del engine
        gc.collect()
        responder = None if self._model_ref is None else self._model_ref()
        held_by = "" if responder is None else f" (still referenced by {holders_of(responder)})"
        del responder
        released = self._model_ref is None or self._model_ref() is None
        self.get_logger().info(f"model released: {released}{held_by}; process memory "
                               f"{process_memory_mb():.0f} MiB")

    def _reconfigure(self, config: EngineConfig) -> None:
        if self.engine is not None:
            self.engine.reconfigure(config)

    def _deliver(self, event: EngineEvent) -> None:
        """The engine's event callback: publish, route to Converse goals, count; never raise."""
        try:
            self._handle_event(event)
        except Exception as error:  # counted and logged as the node's own failure
            self._delivery_failed(error)

    def _handle_event(self, event: EngineEvent) -> None:
        self.state.observe(event)
        active = self.active
        if active is not None:
            active.publisher.publish(event)
        self.router.dispatch(event)
        if isinstance(event, TurnFinished):
            self.last_metrics = event.metrics
        elif isinstance(event, (InputWarning, EngineError)):
            self.counters.add(f"engine.{type(event).__name__}.{event.kind}")
            log = self.get_logger().warning if isinstance(event, InputWarning) \
                else self.get_logger().error
            log(f"turn {event.turn_id}: {event.kind}: {event.message}",
                throttle_duration_sec=self.settings.log_throttle_s)

    def _delivery_failed(self, error: Exception) -> None:
        self.counters.add("events.publish_failed")
        self.get_logger().error(f"publishing an engine event failed: {error!r}",
                                throttle_duration_sec=self.settings.log_throttle_s)

    def _conversation_state(self) -> str:
        """The engine's state ("unloaded" without an engine)."""
        engine = self.engine
        return STATE_UNLOADED if engine is None else engine.state

    def _publish_state(self) -> None:
        engine = self.engine
        if engine is None:
            self.state.update(STATE_IDLE, False, self.last_error or self.lifecycle_state())
        elif self.active is None:  # activating or inactive: never "listening" without audio/in
            label = STATE_IDLE if engine.state == STATE_LISTENING else engine.state
            self.state.update(label, False, self.last_error or self.lifecycle_state())
        else:
            # a chunk that began an utterance publishes it before TurnStarted comes through
            self.state.turn_id = max(self.state.turn_id, engine.utterance_turn or 0)
            self.state.update(engine.state, engine.listening)

    def _publish_diagnostics(self) -> None:
        engine, active = self.engine, self.active
        snapshot = NodeSnapshot(
            self.lifecycle_state(), engine is not None, self.runtime.device,
            self._conversation_state(), len(engine.images) if engine is not None else 0,
            engine.dropped_events if engine is not None else 0, self.counters.snapshot(),
            active.inputs.publisher_counts() if active is not None else {},
            self.last_metrics, self.last_error,
            engine.echo_report() if engine is not None else None)
        array = snapshot_to_diagnostics(snapshot, self.get_fully_qualified_name())
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def main(args: list[str] | None = None) -> None:
    """Run omni_node (configure + activate at start unless autostart is false)."""
    exit_process(spin_node(OmniNode, args, threads=6))
