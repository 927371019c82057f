"""omni_node: the Stream-Omni assistant as a ROS 2 lifecycle node.

configure loads the model and builds the ConversationEngine (one worker thread owns the model),
activate opens the topics, the `~/converse` action and the services, deactivate stops listening
and cancels the turn, cleanup frees the model. A MultiThreadedExecutor keeps camera and audio
flowing during a turn; an EventPump thread publishes engine events as they come.
"""
from __future__ import annotations

import gc
import logging
import signal
import sys
import weakref
from dataclasses import dataclass

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.engine import ConversationEngine
from stream_omni_ros.engine.events import EngineError, EngineEvent, InputWarning, TurnFinished
from stream_omni_ros.engine.runtime_config import RuntimeConfig, load_responder
from stream_omni_ros.errors import StreamOmniError
from stream_omni_ros.nodes.omni_action import ConverseServer, TurnRouter
from stream_omni_ros.nodes.omni_config import RUNTIME_SAFE_ENGINE_FIELDS, OmniNodeConfig
from stream_omni_ros.nodes.omni_diagnostics import (InputCounters, NodeSnapshot, PythonLogToRos,
                                                    process_memory_mb, snapshot_to_diagnostics)
from stream_omni_ros.nodes.omni_inputs import InputAdapter
from stream_omni_ros.nodes.omni_publishers import EventPublisher, StatePublisher
from stream_omni_ros.nodes.omni_services import ConversationServices, EventPump
from stream_omni_ros.nodes.params import LiveConfig, declare_config

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


@dataclass
class ActiveParts:
    """What exists only while the node is active."""

    inputs: InputAdapter
    publisher: EventPublisher
    action: ConverseServer
    services: ConversationServices

    def destroy(self) -> None:
        """Close subscriptions, action, services and publishers."""
        for part in (self.inputs, self.action, self.services, self.publisher):
            part.destroy()


def heaviest_part(responder: object) -> object:
    """What cleanup must free: the model of a model-backed responder, else the responder."""
    return getattr(getattr(responder, "generator", None), "model", responder)


class OmniNode(LifecycleNode):
    """Stream-Omni lifecycle node; see the module docstring."""

    def __init__(self) -> None:
        super().__init__("omni_node")
        self.settings = declare_config(self, OmniNodeConfig)
        self.runtime = declare_config(self, RuntimeConfig)
        self.live = LiveConfig(self, EngineConfig, runtime_safe=RUNTIME_SAFE_ENGINE_FIELDS,
                               on_change=self._reconfigure)
        self.counters, self.router = InputCounters(), TurnRouter()
        self.engine: ConversationEngine | None = None
        self.active: ActiveParts | None = None
        self._pump: EventPump | None = None
        self._model_ref: weakref.ref | None = None
        self.lifecycle_label, self.last_error, self.last_metrics = "unconfigured", "", None
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

    def _start(self) -> None:
        self._autostart.cancel()
        if self.trigger_configure() == SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model and start the engine; a failure leaves the node unconfigured."""
        self.get_logger().info(f"configuring: responder {self.runtime.responder}, model.path "
                               f"{self.runtime.model.path!r}, cosyvoice.path "
                               f"{self.runtime.cosyvoice.path!r}")
        try:
            responder = load_responder(self.runtime)
            self.engine = ConversationEngine(responder, self.live.value, clock=self.now_s)
        except (StreamOmniError, OSError, MemoryError, RuntimeError) as error:
            hint = " (try quantization 8bit/4bit or a smaller dtype)" \
                if "out of memory" in str(error).lower() else ""
            self.last_error = f"configure failed: {type(error).__name__}: {error}{hint}"
            self.get_logger().error(self.last_error)
            return FAILURE
        self._model_ref = weakref.ref(heaviest_part(responder))
        self._pump = EventPump(self.engine, self._deliver, self._delivery_failed)
        self.lifecycle_label, self.last_error = "inactive", ""
        self.get_logger().info(f"responder {self.runtime.responder} loaded on "
                               f"{self.runtime.device}; process memory "
                               f"{process_memory_mb():.0f} MiB")
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Open topics, the action and the services."""
        inputs = InputAdapter(self, self.engine, self.settings, self.counters)
        self.active = ActiveParts(inputs, EventPublisher(self, self.settings.audio_out, inputs),
                                  ConverseServer(self, self.engine, self.router, self.now_s),
                                  ConversationServices(self, self.engine, inputs,
                                                       self.counters))
        self.lifecycle_label = "active"
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening, cancel the turn and drop its unplayed audio."""
        if self.engine is not None:
            self.engine.cancel()  # first, so that a running Converse goal ends with its turn
        active, self.active = self.active, None
        if active is not None:
            active.destroy()
        self.lifecycle_label = "inactive"
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the engine and free the model (and the CUDA cache)."""
        self._release()
        self.lifecycle_label = "unconfigured"
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything on the way out."""
        self.on_deactivate(state)
        self._release()
        self.lifecycle_label = "finalized"
        return SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover to unconfigured after a failed transition."""
        return self.on_shutdown(state)

    def _release(self) -> None:
        if self._pump is not None:
            self._pump.stop()
        if self.engine is not None:
            self.engine.stop()
        self.engine = self._pump = None
        gc.collect()
        if self.runtime.device.startswith("cuda"):
            import torch  # only on GPU machines
            torch.cuda.empty_cache()
        released = self._model_ref is None or self._model_ref() is None
        self.get_logger().info(f"model released: {released}; process memory "
                               f"{process_memory_mb():.0f} MiB")

    def _reconfigure(self, config: EngineConfig) -> None:
        if self.engine is not None:
            self.engine.reconfigure(config)

    def _deliver(self, event: EngineEvent) -> None:
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

    def _publish_state(self) -> None:
        engine, active = self.engine, self.active
        if engine is None or active is None:
            self.state.update("idle", False, self.last_error or self.lifecycle_label)
            return
        label = engine.state
        if label == "listening" and not active.inputs.listening:
            label = "idle"
        self.state.update(label, active.inputs.listening)

    def _publish_diagnostics(self) -> None:
        engine = self.engine
        snapshot = NodeSnapshot(
            self.lifecycle_label, engine is not None, self.runtime.device,
            engine.state if engine is not None else "unloaded",
            len(engine.images) if engine is not None else 0,
            engine.dropped_events if engine is not None else 0, self.counters.snapshot(),
            self.last_metrics, self.last_error)
        array = snapshot_to_diagnostics(snapshot, self.get_fully_qualified_name())
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)


def spin_until_shutdown(node: OmniNode) -> None:
    """Spin on a MultiThreadedExecutor until SIGINT/SIGTERM, then release the model."""
    executor = MultiThreadedExecutor(num_threads=6)
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()  # no callback may still hold the engine while it is released
        node.on_shutdown(None)
        node.destroy_node()
        rclpy.try_shutdown()


def main(args: list[str] | None = None) -> None:
    """Run omni_node (configure + activate at start unless autostart is false)."""
    rclpy.init(args=args if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    spin_until_shutdown(OmniNode())
