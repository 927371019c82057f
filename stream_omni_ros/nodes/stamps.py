"""builtin_interfaces/Time <-> float seconds of the node clock."""
from __future__ import annotations

import math

from builtin_interfaces.msg import Time


def seconds_to_time_msg(seconds: float | None) -> Time:
    """Seconds (node clock) -> builtin_interfaces/Time; None or non-finite -> zero time."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return Time()
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 10**9, nanosec=nanoseconds % 10**9)


def time_msg_to_seconds(stamp: Time) -> float:
    """builtin_interfaces/Time -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9
