"""Camera messages <-> RGB arrays (uint8 [height, width, 3]).

Decoding goes through ROS 2's cv_bridge where it is installed (robots) and through
`rosbags-image` otherwise (never PyPI's unrelated `cv-bridge`). Row padding (`step`) is removed
here first, because rosbags-image ignores `step`.

16-bit images (mono16, 16UC1) become 8 bit by keeping the high byte (value // 256): a linear map
of the full range 0..65535 onto 0..255, the same for every frame, so a depth image in millimetres
becomes a brightness ramp with ~0.26 m per grey level rather than an auto-contrasted picture.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

from stream_omni_ros.errors import InputError, InputReason

try:  # ROS 2's cv_bridge exists on robots with a distro; the PyPI wheels here lack it.
    from cv_bridge import CvBridge
    _CV_BRIDGE = CvBridge()
    IMAGE_DECODER = "cv_bridge"
except ImportError:
    _CV_BRIDGE = None
    from rosbags.image import image_to_cvimage
    IMAGE_DECODER = "rosbags-image (cv_bridge is not importable)"


@dataclass(frozen=True)
class PixelFormat:
    """How one ROS encoding lays out a pixel, and the name the decoders know it by."""

    dtype: str
    channels: int
    decoder_name: str

    @property
    def bytes_per_pixel(self) -> int:
        """Bytes one pixel occupies in a row (a YUV 4:2:2 pixel holds 2 bytes on average)."""
        return np.dtype(self.dtype).itemsize * self.channels


# Generic (8UC1 ...) and newer (uyvy, yuyv) names map to the names both decoders know.
PIXEL_FORMATS: dict[str, PixelFormat] = {
    "rgb8": PixelFormat("uint8", 3, "rgb8"),
    "bgr8": PixelFormat("uint8", 3, "bgr8"),
    "rgba8": PixelFormat("uint8", 4, "rgba8"),
    "bgra8": PixelFormat("uint8", 4, "bgra8"),
    "mono8": PixelFormat("uint8", 1, "mono8"),
    "8UC1": PixelFormat("uint8", 1, "mono8"),
    # 8UC3 carries no channel order; like cv_bridge it passes through unchanged (as RGB).
    "8UC3": PixelFormat("uint8", 3, "rgb8"),
    "mono16": PixelFormat("uint16", 1, "mono16"),
    "16UC1": PixelFormat("uint16", 1, "mono16"),
    "yuv422": PixelFormat("uint8", 2, "yuv422"),
    "uyvy": PixelFormat("uint8", 2, "yuv422"),
    "yuv422_yuy2": PixelFormat("uint8", 2, "yuv422_yuy2"),
    "yuyv": PixelFormat("uint8", 2, "yuv422_yuy2"),
}
_YUV_FROM_RGB = {"yuv422": cv2.COLOR_RGB2YUV_UYVY, "yuv422_yuy2": cv2.COLOR_RGB2YUV_YUY2}
# 16.8 megapixels (4096 x 4096) decode to 48 MiB of RGB: more than any robot camera sends.
DEFAULT_MAX_PIXELS = 4096 * 4096
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers hold the frame size; C4 (DHT), C8 (JPG), CC (DAC) are not SOFs.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_START_OF_SCAN = 0xDA


@dataclass(frozen=True)
class _PackedImage:
    """An Image without row padding, duck-typed for cv_bridge and rosbags-image."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes


def _jpeg_frame_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment of a JPEG stream, if any."""
    pos = 2  # after the start-of-image marker
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2  # fill byte or a marker without a segment
            continue
        if marker in _JPEG_SOF_MARKERS:  # FF Cx, length, precision, height, width
            if pos + 9 > len(data):
                return None
            return (int.from_bytes(data[pos + 7:pos + 9], "big"),
                    int.from_bytes(data[pos + 5:pos + 7], "big"))
        if marker == _JPEG_START_OF_SCAN:
            return None
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def compressed_image_size(data: np.ndarray) -> tuple[int, int]:
    """(width, height) read from a PNG or JPEG header without decoding; InputError otherwise."""
    view = memoryview(np.ascontiguousarray(data, np.uint8))
    size = None
    if view[:8] == PNG_SIGNATURE:
        if len(view) >= 24 and view[12:16] == b"IHDR":
            size = int.from_bytes(view[16:20], "big"), int.from_bytes(view[20:24], "big")
    elif view[:2] == b"\xff\xd8":
        size = _jpeg_frame_size(view)
    else:
        raise InputError(f"CompressedImage.data ({len(view)} bytes) starts with "
                         f"{bytes(view[:8]).hex()}: expected a JPEG or PNG stream",
                         InputReason.FORMAT)
    if size is None or 0 in size:
        raise InputError(f"CompressedImage.data ({len(view)} bytes): its JPEG/PNG header gives "
                         f"no image size ({size}); expected width and height > 0",
                         InputReason.DECODE)
    return size


def _pixel_format(encoding: str, field: str) -> PixelFormat:
    if encoding not in PIXEL_FORMATS:
        raise InputError(f"{field} {encoding!r} is not supported: expected one of "
                         f"{sorted(PIXEL_FORMATS)}", InputReason.ENCODING)
    return PIXEL_FORMATS[encoding]


def check_pixel_count(width: int, height: int, max_pixels: int, what: str) -> None:
    """Refuse an image of more than `max_pixels` pixels before any decoding (reason too_large)."""
    if width * height > max_pixels:
        raise InputError(f"{what} is {width}x{height} = {width * height} pixels: expected at "
                         f"most {max_pixels} (image.max_pixels)", InputReason.TOO_LARGE)


def _packed(msg: Image, max_pixels: int) -> _PackedImage:
    """Check the layout fields of `msg` and strip its row padding."""
    fmt = _pixel_format(msg.encoding, "Image.encoding")
    if msg.height == 0 or msg.width == 0:
        raise InputError(f"Image is empty: height={msg.height} width={msg.width}, expected > 0",
                         InputReason.EMPTY)
    check_pixel_count(msg.width, msg.height, max_pixels, "Image")
    if fmt.channels == 2 and msg.width % 2:
        raise InputError(f"Image.width {msg.width} is odd: {msg.encoding} packs pixel pairs",
                         InputReason.ODD_WIDTH)
    row_bytes = msg.width * fmt.bytes_per_pixel
    if msg.step < row_bytes:
        raise InputError(f"Image.step {msg.step} is too small: expected >= width * bytes per "
                         f"pixel = {msg.width} * {fmt.bytes_per_pixel} = {row_bytes}",
                         InputReason.STEP)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != msg.step * msg.height:
        raise InputError(f"Image.data has {data.size} bytes: expected step * height = "
                         f"{msg.step} * {msg.height} = {msg.step * msg.height}",
                         InputReason.EMPTY if data.size == 0 else InputReason.SIZE)
    rows = data.reshape(msg.height, msg.step)[:, :row_bytes]  # [H, row_bytes]
    return _PackedImage(msg.height, msg.width, fmt.decoder_name, int(bool(msg.is_bigendian)),
                        row_bytes, rows.tobytes())


def _decode(image: _PackedImage, target: str) -> np.ndarray:
    """Decode through cv_bridge or rosbags-image; `target` is 'rgb8' or 'passthrough'."""
    if _CV_BRIDGE is not None:
        return _CV_BRIDGE.imgmsg_to_cv2(image, desired_encoding=target)
    return image_to_cvimage(image, None if target == "passthrough" else target)


def gray16_to_rgb(gray: np.ndarray) -> np.ndarray:
    """Map a uint16 [H, W] image to uint8 RGB by its high byte (see the module docstring)."""
    gray8 = (gray >> 8).astype(np.uint8)
    return np.repeat(gray8[:, :, None], 3, axis=2)  # [H, W] -> [H, W, 3]


def image_msg_to_rgb(msg: Image, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/Image to uint8 RGB [height, width, 3]; InputError if malformed."""
    packed = _packed(msg, max_pixels)
    if PIXEL_FORMATS[msg.encoding].dtype == "uint16":
        rgb = gray16_to_rgb(np.asarray(_decode(packed, "passthrough")).reshape(
            msg.height, msg.width))
    else:
        rgb = _decode(packed, "rgb8")
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def compressed_image_msg_to_rgb(msg: CompressedImage,
                                max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to uint8 RGB [H, W, 3].

    The size written in the stream's header is checked against `max_pixels` before decoding,
    so a small file that would decode to a huge image (a decompression bomb) costs nothing.
    """
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size == 0:
        raise InputError(f"CompressedImage.data is empty (format {msg.format!r})",
                         InputReason.EMPTY)
    width, height = compressed_image_size(data)
    check_pixel_count(width, height, max_pixels, "CompressedImage")
    if _CV_BRIDGE is not None:
        return np.ascontiguousarray(_CV_BRIDGE.compressed_imgmsg_to_cv2(msg, "rgb8"))
    # rosbags-image decodes with IMREAD_ANYCOLOR and then fails on grey PNGs; force colour.
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"CompressedImage.data ({data.size} bytes, format {msg.format!r}) "
                         "could not be decoded: expected a JPEG or PNG stream", InputReason.DECODE)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _rgb_to_payload(rgb: np.ndarray, decoder_name: str) -> np.ndarray:
    """Pixels of `rgb` in the layout of an encoding (by its decoder name)."""
    if decoder_name == "rgb8":
        return rgb
    if decoder_name in ("bgr8", "bgra8"):
        bgr = rgb[:, :, ::-1]
        return bgr if decoder_name == "bgr8" else cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    if decoder_name == "rgba8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA)
    if decoder_name in _YUV_FROM_RGB:
        return cv2.cvtColor(rgb, _YUV_FROM_RGB[decoder_name])
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # x * 257 maps 0..255 onto 0..65535 so the high byte gives back x exactly.
    return gray if decoder_name == "mono8" else (gray.astype(np.uint16) * 257).astype("<u2")


def rgb_to_image_msg(rgb: np.ndarray, encoding: str = "rgb8", *, stamp: Time | None = None,
                     frame_id: str = "") -> Image:
    """Encode uint8 RGB [H, W, 3] as a little-endian, unpadded sensor_msgs/Image."""
    fmt = _pixel_format(encoding, "encoding")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or 0 in rgb.shape:
        raise InputError(f"RGB image has shape {rgb.shape} dtype {rgb.dtype}: expected uint8 "
                         "[height > 0, width > 0, 3]")
    height, width = rgb.shape[:2]
    if fmt.channels == 2 and width % 2:
        raise InputError(f"RGB image width {width} is odd: {encoding} packs pixel pairs")
    payload = np.ascontiguousarray(_rgb_to_payload(np.ascontiguousarray(rgb), fmt.decoder_name))
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * fmt.bytes_per_pixel)
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.data = payload.tobytes()
    return msg
