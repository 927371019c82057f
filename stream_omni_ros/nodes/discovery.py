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


def wait_discovered(node: Node, server: str, timeout_s: float) -> bool:
    """Wait until node `server` has discovered `node`'s endpoints; False after `timeout_s`.

    `node` must be spun by another thread; `server` is a fully qualified node name.
    """
    deadline = time.monotonic() + timeout_s
    client = node.create_client(GetParameters, f"{server}/get_parameters")
    try:
        if not client.wait_for_service(timeout_sec=timeout_s):
            return False
        while time.monotonic() < deadline:
            future = client.call_async(GetParameters.Request())
            resend_at = min(deadline, time.monotonic() + RESEND_S)
            while not future.done() and time.monotonic() < resend_at:
                time.sleep(0.01)
            if future.done():
                return True
        return False
    finally:
        node.destroy_client(client)
