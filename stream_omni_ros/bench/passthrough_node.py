"""omni_node with its model replaced by the pass-through responder (ROS-overhead benchmark).

    python -m stream_omni_ros.bench.passthrough_node TEXT_TOKENS UNITS --ros-args ...

The node, its topics, QoS, engine and publishers are the real ones; only the loader that would
read the checkpoint returns a PassThroughResponder instead.
"""
from __future__ import annotations

import sys

from stream_omni_ros.bench.passthrough import PassThroughResponder
from stream_omni_ros.errors import ConfigError


class _NoModel:
    """Stands in for the model omni_node keeps a weak reference to (to report its release)."""


class _NoGenerator:
    """Holds the stand-in model where omni_node looks for it (responder.generator.model)."""

    def __init__(self) -> None:
        self.model = _NoModel()


def main(argv: list[str] | None = None) -> None:
    """Run omni_node with the pass-through responder."""
    argv = list(sys.argv if argv is None else argv)
    try:
        text_tokens, units = int(argv[1]), int(argv[2])
    except (IndexError, ValueError) as error:
        raise ConfigError(f"usage: passthrough_node TEXT_TOKENS UNITS [--ros-args ...]; "
                          f"got {argv[1:3]}") from error
    from stream_omni_ros.nodes import omni_node

    def load_passthrough(runtime) -> PassThroughResponder:
        responder = PassThroughResponder(text_tokens, units)
        responder.generator = _NoGenerator()
        return responder

    omni_node.load_responder = load_passthrough  # this process only: the model is not loaded
    omni_node.main(argv)


if __name__ == "__main__":
    main()
