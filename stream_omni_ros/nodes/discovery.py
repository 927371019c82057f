"""Whether a remote node has discovered this node's endpoints: a parameter-service round trip.

A writer that sees a remote reader (`get_subscription_count`, `wait_for_service`) does not mean
that reader has matched the writer yet, and a volatile reader never gets what was sent before it
matched. Discovery data from one participant is processed in the order it was sent, so an answer
to a client created after the other endpoints shows the remote node knows them all
(doc/architecture.md, "Discovery before the first message").
"""
from __future__ import annotations

import time

from rcl_interfaces.srv import GetParameters
from rclpy.node import Node

RESEND_S = 1.0  # a request sent before the server matched the client is lost: send it again


class DiscoveryProbe:
    """`get_parameters` calls to node `server` (fully qualified), resent until one is answered."""

    def __init__(self, node: Node, server: str) -> None:
        self._node = node
        self._client = node.create_client(GetParameters, f"{server}/get_parameters")
        self._future = None
        self._resend_at = 0.0

    def answered(self) -> bool:
        """True once `server` answered, so it knows every endpoint made before this probe."""
        if self._future is not None and self._future.done():
            return True
        now = time.monotonic()
        if self._client.service_is_ready() and now >= self._resend_at:
            self._future = self._client.call_async(GetParameters.Request())
            self._resend_at = now + RESEND_S
        return False

    def close(self) -> None:
        """Destroy the probe's client."""
        self._node.destroy_client(self._client)


def wait_discovered(node: Node, server: str, timeout_s: float) -> bool:
    """Wait until `server` has discovered `node`'s endpoints; False after `timeout_s`.

    `node` must be spun by another thread (a foreground spinner polls DiscoveryProbe itself).
    """
    probe, deadline = DiscoveryProbe(node, server), time.monotonic() + timeout_s
    try:
        while not probe.answered():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
    finally:
        probe.close()
