"""Recent camera frames, stamped, and the choice of the frame that goes with an utterance."""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass

import numpy as np

from stream_omni_ros.engine.config import ImageConfig
from stream_omni_ros.errors import InputError


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
    """Thread-safe ring of the last frames, kept sorted by stamp."""

    def __init__(self, config: ImageConfig | None = None) -> None:
        self.config = config or ImageConfig()
        self._lock = threading.Lock()
        self._frames: list[StampedImage] = []

    def add(self, image: np.ndarray, stamp: float, frame_id: str = "") -> StampedImage:
        """Validate, convert and store a frame; raises InputError on a bad image or stamp."""
        if not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
            raise InputError(f"image stamp {stamp!r} is invalid; expected finite seconds")
        frame = StampedImage(any_image_to_rgb(image), float(stamp), frame_id)
        with self._lock:
            stamps = [f.stamp for f in self._frames]
            self._frames.insert(bisect.bisect_right(stamps, frame.stamp), frame)
            del self._frames[:-self.config.buffer_length]
        return frame

    def clear(self) -> None:
        """Forget every frame."""
        with self._lock:
            self._frames.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def nearest(self, t: float, max_age_s: float | None = None) -> ImageLookup:
        """The frame whose stamp is nearest t among those not older than max_age_s before t."""
        max_age_s = self.config.max_age_s if max_age_s is None else max_age_s
        with self._lock:
            frames = list(self._frames)
        if not frames:
            return ImageLookup(None, "no camera frame received yet")
        fresh = [f for f in frames if t - f.stamp <= max_age_s]
        if not fresh:
            newest = frames[-1]
            return ImageLookup(None, f"newest camera frame is {t - newest.stamp:.2f} s older "
                                     f"than the moment it is taken for (max_age_s "
                                     f"{max_age_s:.2f})")
        return ImageLookup(min(fresh, key=lambda f: abs(f.stamp - t)))
