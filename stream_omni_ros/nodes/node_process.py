"""Run nodes in this process until SIGINT/SIGTERM, then stop them cleanly with exit status 0.

`ros2 launch` sends SIGINT to every node, and in non-interactive mode a node also gets the
terminal's SIGINT, so a node may see two SIGINTs, or a SIGTERM while it is still tearing down or
already exiting. Signals therefore only set a flag: the spin loop notices it within SPIN_PERIOD_S
(wall time, so a stopped simulation clock cannot hold it), later signals are ignored (after the
teardown too), and no KeyboardInterrupt can land in the middle of a file write or a thread join.

Once the nodes are shut down (files written, devices closed, the middleware left), the process
exits at once with exit_process(): the interpreter's own finalization, which tears down torch and
the other extension modules one object at a time, took over 2 s on a loaded machine.

A node may define two exit steps, called once each on the way out:
`stop_work()` before the executor waits (at most CALLBACK_WAIT_S) for running callbacks: cancel
what they wait on; `finish()` after the executor stopped, before destroy_node(): flush files, free
the model.
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

import rclpy
from rclpy.executors import (Executor, ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from stream_omni_ros.errors import ConfigError, StreamOmniError

PACKAGE = "stream_omni_ros"
SPIN_PERIOD_S = 0.1  # longest a stop request waits for the spin loop
# Running callbacks get this long to return at shutdown; one still running then (a model being
# loaded by configure) is left to end with the process.
CALLBACK_WAIT_S = 2.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SUPPORTED_DISTROS = "Jazzy and Kilted"


class StopRequest:
    """SIGINT/SIGTERM handlers that record the first signal and ignore the ones after it."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this process (also when started with them ignored)."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name

    @property
    def requested(self) -> bool:
        """Whether a stop signal arrived."""
        return self.signal_name is not None


def check_rclpy_supported() -> None:
    """ConfigError on an rclpy older than these nodes need (ROS 2 Humble and older)."""
    if not hasattr(Node, "add_post_set_parameters_callback"):
        raise ConfigError(
            "this rclpy has no Node.add_post_set_parameters_callback (ROS 2 Humble or older): "
            f"stream_omni_ros runs on ROS 2 {SUPPORTED_DISTROS}; expected one of those sourced")


def init_rclpy(args: Sequence[str] | None) -> StopRequest:
    """Check the distro, init rclpy without its signal handlers and install ours."""
    check_rclpy_supported()
    stop = StopRequest()
    stop.install()
    rclpy.init(args=list(args) if args is not None else sys.argv,
               signal_handler_options=SignalHandlerOptions.NO)
    return stop


def make_executor(threads: int) -> Executor:
    """One thread: SingleThreadedExecutor; more: a MultiThreadedExecutor of that size."""
    return SingleThreadedExecutor() if threads <= 1 else MultiThreadedExecutor(threads)


def spin_until_stopped(executor: Executor, stop: StopRequest,
                       done: Callable[[], bool] = lambda: False) -> None:
    """Spin until a stop signal, `done()`, or rclpy shuts down."""
    try:
        while not stop.requested and not done() and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    except ExternalShutdownException:
        pass


def _exit_step(node: Node, step: str) -> None:
    method = getattr(node, step, None)
    if method is None:
        return
    try:
        method()
    except Exception as error:  # one node's failing step must not skip the others
        rclpy.logging.get_logger(PACKAGE).error(f"{node.get_name()}: {step} failed: {error!r}")


def stop_executor(executor: Executor) -> None:
    """Stop the executor, waiting at most CALLBACK_WAIT_S for its running callbacks."""
    # Kilted's MultiThreadedExecutor.shutdown joins its threads without a time limit.
    stopper = threading.Thread(target=executor.shutdown, name="executor_shutdown", daemon=True)
    stopper.start()
    stopper.join(CALLBACK_WAIT_S)
    if stopper.is_alive():
        rclpy.logging.get_logger(PACKAGE).warning(
            f"a callback is still running after {CALLBACK_WAIT_S:.0f} s (a model load?): "
            "shutting down without waiting for it")


def shut_down(executor: Executor, nodes: Sequence[Node]) -> None:
    """Exit steps (newest node first), stop the executor, destroy the nodes, shut rclpy down."""
    for node in reversed(nodes):
        _exit_step(node, "stop_work")
    stop_executor(executor)
    for node in reversed(nodes):
        _exit_step(node, "finish")
        node.destroy_node()
    rclpy.try_shutdown()
    # Python's finalization puts a handler function back to the default action, so a signal
    # arriving then would kill the process (status -2); an ignored signal stays ignored.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def exit_process(status: int) -> NoReturn:
    """End a node process after its shutdown: flush the logs, skip the slow finalization."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def spin_node(make_node: Callable[[], Node], args: Sequence[str] | None = None, *,
              threads: int = 1, done: Callable[[Node], bool] | None = None) -> int:
    """A node executable's main: 0 after SIGINT/SIGTERM (or `done`), 1 with a log on error."""
    try:
        stop = init_rclpy(args)
    except ConfigError as error:
        print(f"[FATAL] [{PACKAGE}]: {error}", file=sys.stderr)
        return 1
    executor, nodes = make_executor(threads), []
    try:
        nodes.append(make_node())
        executor.add_node(nodes[0])
        spin_until_stopped(executor, stop, (lambda: done(nodes[0])) if done else lambda: False)
    except StreamOmniError as error:
        rclpy.logging.get_logger(PACKAGE).fatal(str(error))
        return 1
    finally:
        shut_down(executor, nodes)
    return 0
