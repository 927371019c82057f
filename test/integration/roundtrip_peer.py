"""Echo peer for the interface round-trip test: runs in its own process.

usage: roundtrip_peer.py MODULE:CLASS ...   (e.g. stream_omni_ros.msg:AudioChunk)
Each message received on `roundtrip/<CLASS>` is published back unchanged on
`roundtrip/<CLASS>/echo`. Prints "ready" once every subscription exists.
"""
import importlib
import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy


def resolve(spec: str) -> type:
    """Import `module:Class.Attr` and return the message class."""
    module_name, attr_path = spec.split(":")
    obj = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return obj


def main() -> None:
    """Subscribe to every named type and echo it back."""
    rclpy.init()
    node = rclpy.create_node("roundtrip_peer")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
    keep = []
    for spec in sys.argv[1:]:
        msg_type = resolve(spec)
        name = spec.split(":")[1].replace(".", "_")
        pub = node.create_publisher(msg_type, f"roundtrip/{name}/echo", qos)
        keep.append(node.create_subscription(msg_type, f"roundtrip/{name}", pub.publish, qos))
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
