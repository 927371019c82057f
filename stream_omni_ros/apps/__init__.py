"""Applications that start nodes: one-process bringup, the demo and its checks, the loopback check.

They sit above ``nodes/`` (they import nodes, never the other way round), like ``bench/``.
"""
