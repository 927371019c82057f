"""Recent camera frames, stamped, and the choice of the frame that goes with an utterance."""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from stream_omni_ros.engine.config import ImageConfig
from stream_omni_ros.errors import InputError, InputReason


@dataclass(frozen=True)
class StampedImage:
    """One RGB uint8 frame [H, W, 3] and the time it was captured (caller's clock, seconds)."""

    rgb: np.ndarray
    stamp: float
    frame_id: str = ""


@dataclass(frozen=True)
class ImageLookup:
    """Result of ImageBuffer.nearest: the frame, or None and the reason why there is none."""

    image: StampedImage | None
    reason: str = ""


def any_image_to_rgb(image: np.ndarray) -> np.ndarray:
    """Validate an image and return it as contiguous RGB uint8 [H, W, 3].

    Gray [H, W] (or [H, W, 1]) is replicated to three channels; RGBA drops its alpha.
    """
    if not isinstance(image, np.ndarray):
        raise InputError(f"image has type {type(image).__name__}; expected a numpy array")
    if image.dtype != np.uint8:
        raise InputError(f"image dtype {image.dtype} is not supported; expected uint8")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim != 3 or image.shape[2] not in (3, 4):
        raise InputError(f"image shape {image.shape} is not supported; expected [H, W], "
                         "[H, W, 3] (RGB) or [H, W, 4] (RGBA)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image shape {image.shape} is empty; expected H > 0 and W > 0")
    return np.ascontiguousarray(image[:, :, :3])


class ImageBuffer:
    """Thread-safe ring of the last frames to arrive, bounded in count and in bytes.

    Frames leave in arrival order, so a frame with a wrong stamp never outlives newer ones.
    With a clock (seconds; 0 or less: not known yet, as sim time before /clock), frames
    stamped more than max_future_s after it are refused, and kept frames that the clock has
    stepped back behind are dropped and counted (take_discarded).
    """

    def __init__(self, config: ImageConfig | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.config = config or ImageConfig()
        self._clock = clock
        self._lock = threading.Lock()
        self._frames: deque[StampedImage] = deque()
        self._bytes = 0
        self._discarded = 0

    def add(self, image: np.ndarray, stamp: float, frame_id: str = "") -> StampedImage:
        """Validate, convert and store a frame; raises InputError on a bad image or stamp."""
        if not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
            raise InputError(f"image stamp {stamp!r} is invalid; expected finite seconds",
                             InputReason.STAMP)
        now = self._now()
        if now is not None and stamp > now + self.config.max_future_s:
            raise InputError(f"image stamp {stamp:.3f} is {stamp - now:.3f} s after the clock "
                             f"({now:.3f}); expected at most image.max_future_s = "
                             f"{self.config.max_future_s} s (a clock step or a skewed camera "
                             "clock?)", InputReason.FUTURE)
        frame = StampedImage(any_image_to_rgb(image), float(stamp), frame_id)
        max_bytes = int(self.config.buffer_max_mb * 2**20)
        if frame.rgb.nbytes > max_bytes:
            raise InputError(f"image of {frame.rgb.shape} takes {frame.rgb.nbytes} bytes as RGB; "
                             f"expected at most image.buffer_max_mb = {self.config.buffer_max_mb}"
                             " MiB", InputReason.TOO_LARGE)
        with self._lock:
            self._drop_future(now)
            self._frames.append(frame)
            self._bytes += frame.rgb.nbytes
            while len(self._frames) > self.config.buffer_length or self._bytes > max_bytes:
                self._bytes -= self._frames.popleft().rgb.nbytes
        return frame

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()
            self._bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    @property
    def nbytes(self) -> int:
        """Bytes of pixels kept."""
        with self._lock:
            return self._bytes

    def take_discarded(self) -> int:
        """Frames dropped because the clock stepped back behind their stamps, since last asked."""
        with self._lock:
            count, self._discarded = self._discarded, 0
            return count

    def nearest(self, t: float, max_age_s: float | None = None) -> ImageLookup:
        """The frame nearest t among those at most max_age_s before and max_future_s after it."""
        max_age_s = self.config.max_age_s if max_age_s is None else max_age_s
        with self._lock:
            self._drop_future(self._now())
            frames = list(self._frames)
        if not frames:
            return ImageLookup(None, "no camera frame received yet")
        after = self.config.max_future_s
        usable = [f for f in frames if -after <= t - f.stamp <= max_age_s]
        if usable:
            return ImageLookup(min(usable, key=lambda f: abs(f.stamp - t)))
        newest = max(frames, key=lambda f: f.stamp)
        if newest.stamp - t > after:
            return ImageLookup(None, f"every camera frame kept is stamped more than "
                                     f"max_future_s {after:.2f} after the moment it is taken "
                                     f"for (newest {newest.stamp - t:.2f} s after)")
        return ImageLookup(None, f"newest camera frame is {t - newest.stamp:.2f} s older "
                                 f"than the moment it is taken for (max_age_s "
                                 f"{max_age_s:.2f})")

    def _now(self) -> float | None:
        now = self._clock() if self._clock is not None else 0.0
        return now if now > 0 else None

    def _drop_future(self, now: float | None) -> None:
        """Drop kept frames stamped after the clock (it stepped back); hold the lock."""
        if now is None:
            return
        limit = now + self.config.max_future_s
        kept = deque(f for f in self._frames if f.stamp <= limit)
        self._discarded += len(self._frames) - len(kept)
        self._frames = kept
        self._bytes = sum(f.rgb.nbytes for f in kept)
