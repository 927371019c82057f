"""Microphone stamps: advance by sample count, absorb a start-up burst, re-anchor on lag."""
import numpy as np

from stream_omni_ros.nodes.audio_capture_node import RESYNC_S, SampleClock

RATE = 16000
CHUNK = 320  # 20 ms
MS = 1_000_000


def test_jittery_callbacks_give_evenly_spaced_stamps():
    clock = SampleClock(RATE)
    jitter_ms = [0, 7, 3, 12, 1, 9, 4]  # callbacks run late by varying amounts
    stamps = [clock.stamp_ns(1000 * MS + i * 20 * MS + j * MS, CHUNK)
              for i, j in enumerate(jitter_ms)]
    assert np.diff(stamps).tolist() == [20 * MS] * (len(stamps) - 1)
    assert stamps[0] == 1000 * MS and clock.resyncs == 0


def test_a_start_up_burst_is_absorbed_without_stamps_going_back():
    clock = SampleClock(RATE)
    true_start = 940 * MS  # four chunks were buffered before the first callback
    measured = [1000 * MS] * 4 + [true_start + i * 20 * MS for i in range(4, 104)]
    stamps = np.array([clock.stamp_ns(m, CHUNK) for m in measured])
    steps = np.diff(stamps)
    assert (steps >= 19 * MS).all() and (steps <= 20 * MS).all()
    assert stamps[-1] == true_start + 103 * 20 * MS  # converged to the true capture time


def test_lagging_stamps_are_re_anchored_after_lost_audio():
    clock = SampleClock(RATE)
    clock.stamp_ns(1000 * MS, CHUNK)
    late = 1020 * MS + int(RESYNC_S * 1e9) + 30 * MS  # an overflow lost ~80 ms of audio
    assert clock.stamp_ns(late, CHUNK) == late and clock.resyncs == 1
    assert clock.stamp_ns(late + 21 * MS, CHUNK) == late + 20 * MS
