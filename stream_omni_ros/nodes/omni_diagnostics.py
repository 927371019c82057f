"""omni_node reporting: rejected-input accounting, /diagnostics status, Python logs to ROS."""
from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from dataclasses import dataclass

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from stream_omni_ros.engine.echo import EchoReport
from stream_omni_ros.engine.events import TurnMetrics
from stream_omni_ros.engine.runtime_config import device_memory_mb

try:  # Iron and newer; Humble has the same classes in rclpy.qos_event
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:
    from rclpy.qos_event import SubscriptionEventCallbacks

DIAGNOSTIC_NAME = "stream_omni: omni_node"


def process_memory_mb() -> float:
    """Resident memory of this process in MiB (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class PythonLogToRos(logging.Handler):
    """Forwards the package's Python log records (model loading progress) to a ROS logger."""

    def __init__(self, ros_logger) -> None:
        super().__init__(logging.INFO)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        """Log one record at the matching ROS severity."""
        text = f"{record.name}: {record.getMessage()}"
        if record.levelno >= logging.ERROR:
            self._ros_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self._ros_logger.warning(text)
        else:
            self._ros_logger.info(text)


class InputCounters:
    """Thread-safe counts of accepted, converted and dropped input messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, amount: int = 1) -> int:
        """Count `amount` messages under `key` (e.g. "audio.dropped.size"); return the total."""
        with self._lock:
            self._counts[key] += amount
            return self._counts[key]

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._counts)


def lost_message_counter(counters: InputCounters, source: str) -> SubscriptionEventCallbacks:
    """Event callbacks that count messages the middleware lost before the subscription.

    They land under `<source>.dropped.dds_lost` (best-effort samples that never arrived whole,
    as the rmw reports them; a KEEP_LAST queue that overwrites unread samples is not reported).
    """
    def on_lost(info) -> None:
        if info.total_count_change > 0:
            counters.add(f"{source}.dropped.dds_lost", int(info.total_count_change))
    return SubscriptionEventCallbacks(message_lost=on_lost)


@dataclass(frozen=True)
class NodeSnapshot:
    """What the diagnostics report, gathered by the node at one moment."""

    lifecycle_state: str
    model_loaded: bool
    device: str
    conversation_state: str
    images_buffered: int
    events_dropped: int
    counters: dict[str, int]
    publishers: dict[str, int]  # input name -> publishers its reader has matched
    last_metrics: TurnMetrics | None
    last_error: str
    echo: EchoReport | None = None  # None while no engine runs


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _metric_values(metrics: TurnMetrics | None) -> list[tuple[str, str]]:
    if metrics is None:
        return []
    return [("last_turn.endpoint_to_transcript_s", _seconds(metrics.endpoint_to_transcript_s)),
            ("last_turn.endpoint_to_first_text_s", _seconds(metrics.endpoint_to_first_text_s)),
            ("last_turn.endpoint_to_first_audio_s", _seconds(metrics.endpoint_to_first_audio_s)),
            ("last_turn.text_tokens", str(metrics.text_tokens)),
            ("last_turn.tokens_per_s", _seconds(metrics.tokens_per_s)),
            ("last_turn.audio_s", _seconds(metrics.audio_s))]


def _echo_values(echo: EchoReport | None) -> list[tuple[str, str]]:
    if echo is None:
        return []
    erle = "n/a" if echo.recent_erle_db is None else f"{echo.recent_erle_db:.1f}"
    values = [("echo.reference_live", str(echo.live)), ("echo.frames", str(echo.frames)),
              ("echo.erle_db", erle)]
    return values + ([("echo.unavailable", echo.unavailable)] if echo.unavailable else [])


def snapshot_to_diagnostics(snapshot: NodeSnapshot, hardware_id: str) -> DiagnosticArray:
    """One DiagnosticStatus: WARN while no model is loaded or after drops, ERROR on failure."""
    dropped = sum(v for k, v in snapshot.counters.items() if ".dropped." in k)
    values = [("lifecycle_state", snapshot.lifecycle_state),
              ("model_loaded", str(snapshot.model_loaded)), ("device", snapshot.device),
              ("conversation_state", snapshot.conversation_state),
              ("process_memory_mb", f"{process_memory_mb():.0f}"),
              ("images_buffered", str(snapshot.images_buffered)),
              ("events_dropped", str(snapshot.events_dropped)),
              ("messages_dropped", str(dropped)), ("last_error", snapshot.last_error)]
    if snapshot.model_loaded:
        gpu_mb = device_memory_mb(snapshot.device)
        if gpu_mb is not None:
            values.append(("device_memory_mb", f"{gpu_mb:.0f}"))
    values += sorted((k, str(v)) for k, v in snapshot.counters.items())
    values += [(f"publishers.{name}", str(n)) for name, n in snapshot.publishers.items()]
    values += _metric_values(snapshot.last_metrics)
    values += _echo_values(snapshot.echo)
    status = DiagnosticStatus(name=DIAGNOSTIC_NAME, hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=v) for k, v in values])
    if snapshot.last_error and not snapshot.model_loaded:
        status.level, status.message = DiagnosticStatus.ERROR, snapshot.last_error
    elif not snapshot.model_loaded:
        status.level, status.message = DiagnosticStatus.WARN, "no model loaded"
    elif dropped:
        status.level, status.message = DiagnosticStatus.WARN, f"{dropped} input messages dropped"
    else:
        status.level, status.message = DiagnosticStatus.OK, snapshot.conversation_state
    return DiagnosticArray(status=[status])
