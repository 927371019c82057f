"""Camera frame buffer: nearest frame to the utterance end, too-old frames, format checks."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.engine.config import ImageConfig
from stream_omni_ros.engine.image_buffer import ImageBuffer
from stream_omni_ros.errors import InputError


def frame(value: int, shape=(4, 6, 3)) -> np.ndarray:
    """A constant uint8 frame, recognisable by its value."""
    return np.full(shape, value, np.uint8)


def test_nearest_frame_to_the_utterance_end_is_chosen():
    buffer = ImageBuffer()
    for value, stamp in [(1, 10.0), (2, 10.5), (3, 11.0), (4, 12.6)]:
        buffer.add(frame(value), stamp)
    assert buffer.nearest(11.1).image.rgb[0, 0, 0] == 3
    assert buffer.nearest(12.5).image.rgb[0, 0, 0] == 4  # slightly newer frame is nearest
    assert buffer.nearest(10.2, max_age_s=0.1).image.rgb[0, 0, 0] == 2


def test_frames_older_than_max_age_are_refused_with_a_reason():
    buffer = ImageBuffer(ImageConfig(max_age_s=2.0))
    assert buffer.nearest(5.0).reason == "no camera frame received yet"
    buffer.add(frame(1), 10.0)
    lookup = buffer.nearest(12.5)
    assert lookup.image is None
    assert "2.50 s older" in lookup.reason and "max_age_s 2.00" in lookup.reason
    assert buffer.nearest(11.9).image is not None


def test_out_of_order_frames_leave_in_arrival_order():
    buffer = ImageBuffer(ImageConfig(buffer_length=3))
    for value, stamp in [(1, 1.0), (5, 5.0), (3, 3.0), (4, 4.0), (2, 2.0)]:
        buffer.add(frame(value), stamp)
    assert len(buffer) == 3  # 1 and 5, the first to arrive, are gone
    assert buffer.nearest(1.0, max_age_s=10).image.rgb[0, 0, 0] == 2
    assert buffer.nearest(5.0, max_age_s=10).image.rgb[0, 0, 0] == 4


def test_frames_from_the_future_cannot_pin_the_buffer_without_a_clock():
    buffer = ImageBuffer(ImageConfig(buffer_length=30))
    for i in range(30):  # a skewed camera clock, before any clock is known
        buffer.add(frame(9), 5000.0 + i / 30)
    buffer.add(frame(1), 100.0)
    lookup = buffer.nearest(100.2)
    assert lookup.image is not None and lookup.image.rgb[0, 0, 0] == 1
    buffer.clear()
    buffer.add(frame(9), 5000.0)
    lookup = buffer.nearest(100.2)
    assert lookup.image is None and "after the moment" in lookup.reason


def test_frames_stamped_after_the_clock_are_refused_with_a_reason():
    buffer = ImageBuffer(ImageConfig(max_future_s=1.0), clock=lambda: 100.0)
    for _ in range(30):
        with pytest.raises(InputError, match="max_future_s") as raised:
            buffer.add(frame(9), 1100.0)
        assert raised.value.reason == "future"
    buffer.add(frame(1), 100.9)  # within max_future_s: camera and node clocks differ a little
    buffer.add(frame(2), 99.9)
    assert len(buffer) == 2 and buffer.nearest(100.0).image.rgb[0, 0, 0] == 2


def test_a_clock_step_back_drops_the_frames_it_left_in_the_future():
    now = [1000.0]
    buffer = ImageBuffer(ImageConfig(max_future_s=1.0), clock=lambda: now[0])
    for i in range(5):
        buffer.add(frame(9), 999.0 + i * 0.1)
    now[0] = 5.0  # a simulation reset: the clock restarts
    lookup = buffer.nearest(5.0)
    assert lookup.image is None and lookup.reason == "no camera frame received yet"
    assert buffer.take_discarded() == 5 and buffer.take_discarded() == 0
    buffer.add(frame(1), 4.9)
    assert buffer.nearest(5.0).image.rgb[0, 0, 0] == 1


def test_an_unknown_clock_checks_nothing():
    buffer = ImageBuffer(clock=lambda: 0.0)  # sim time before the first /clock message
    buffer.add(frame(1), 1e9)
    assert len(buffer) == 1


def test_buffer_is_bounded_in_bytes_as_well_as_in_frames():
    size = frame(1).nbytes  # 72 bytes
    buffer = ImageBuffer(ImageConfig(buffer_length=30, buffer_max_mb=10.5 * size / 2**20))
    for i in range(20):
        buffer.add(frame(i), float(i))
    assert len(buffer) == 10 and buffer.nbytes == 10 * size
    assert buffer.nearest(19.0).image.rgb[0, 0, 0] == 19
    with pytest.raises(InputError, match="buffer_max_mb") as raised:
        buffer.add(frame(1, (40, 60, 3)), 20.0)
    assert raised.value.reason == "too_large"
    assert len(buffer) == 10


def test_gray_rgba_and_single_channel_become_rgb():
    buffer = ImageBuffer()
    gray = buffer.add(np.arange(24, dtype=np.uint8).reshape(4, 6), 1.0).rgb
    assert gray.shape == (4, 6, 3) and (gray[..., 0] == gray[..., 2]).all()
    rgba = np.dstack([frame(7), np.full((4, 6), 255, np.uint8)])
    assert (buffer.add(rgba, 2.0).rgb == 7).all()
    assert buffer.add(frame(9, (4, 6, 1)), 3.0).rgb.shape == (4, 6, 3)


@pytest.mark.parametrize("image,message", [
    (np.zeros((4, 6, 3), np.float32), "dtype float32"),
    (np.zeros((4, 6, 3), np.uint16), "dtype uint16"),
    (np.zeros((4, 6, 2), np.uint8), r"shape \(4, 6, 2\)"),
    (np.zeros((2, 4, 6, 3), np.uint8), r"shape \(2, 4, 6, 3\)"),
    (np.zeros((0, 6, 3), np.uint8), "empty"),
    ([[1, 2]], "type list"),
])
def test_bad_images_raise_input_error_and_buffer_keeps_working(image, message):
    buffer = ImageBuffer()
    with pytest.raises(InputError, match=message):
        buffer.add(image, 1.0)
    with pytest.raises(InputError, match="stamp") as raised:
        buffer.add(frame(1), float("nan"))
    assert raised.value.reason == "stamp"
    buffer.add(frame(1), 1.0)
    assert buffer.nearest(1.0).image is not None
