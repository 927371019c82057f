"""Camera messages <-> RGB: every encoding round-trips; padding, byte order and bad input."""
from __future__ import annotations

import zlib

import cv2
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CompressedImage, Image

from stream_omni_ros.errors import InputError
from stream_omni_ros.nodes.conversions import (PIXEL_FORMATS, PNG_SIGNATURE,
                                               compressed_image_msg_to_rgb,
                                               compressed_image_size,
                                               image_msg_to_rgb, rgb_to_image_msg)

LOSSLESS = ["rgb8", "bgr8", "rgba8", "bgra8", "8UC3"]
GREY = ["mono8", "8UC1", "mono16", "16UC1"]
YUV = ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"]


def random_rgb(height: int = 5, width: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def grey_rgb(height: int = 5, width: int = 6) -> np.ndarray:
    grey = np.random.default_rng(1).integers(0, 256, (height, width, 1), dtype=np.uint8)
    return np.repeat(grey, 3, axis=2)


def smooth_rgb(height: int = 4, width: int = 8) -> np.ndarray:
    """Colours that repeat over pixel pairs, so 4:2:2 chroma subsampling loses nothing."""
    pairs = random_rgb(height, width // 2, seed=2) // 2 + 64
    return np.repeat(pairs, 2, axis=1)


def padded(msg: Image, extra: int) -> Image:
    """The same image with `extra` garbage bytes after every row."""
    rows = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)
    garbage = np.full((msg.height, extra), 0xAB, np.uint8)
    return Image(height=msg.height, width=msg.width, encoding=msg.encoding,
                 is_bigendian=msg.is_bigendian, step=msg.step + extra,
                 data=np.concatenate([rows, garbage], axis=1).tobytes())


def hand_made(encoding: str, rows: list[list[int]], width: int, dtype: str = "u1",
              is_bigendian: bool = False, pad: int = 0) -> Image:
    values = np.array(rows, dtype=(">" if is_bigendian else "<") + dtype)
    raw = np.frombuffer(values.tobytes(), np.uint8).reshape(len(rows), -1)
    raw = np.concatenate([raw, np.full((len(rows), pad), 7, np.uint8)], axis=1)
    return Image(height=len(rows), width=width, encoding=encoding, is_bigendian=is_bigendian,
                 step=raw.shape[1], data=raw.tobytes())


def test_every_listed_encoding_is_tested():
    assert sorted(LOSSLESS + GREY + YUV) == sorted(PIXEL_FORMATS)


@pytest.mark.parametrize("encoding", LOSSLESS)
def test_colour_encodings_round_trip_exactly(encoding):
    rgb = random_rgb()
    msg = rgb_to_image_msg(rgb, encoding, stamp=Time(sec=3, nanosec=4), frame_id="camera")
    assert (msg.header.stamp.sec, msg.header.frame_id) == (3, "camera")
    assert msg.step == rgb.shape[1] * PIXEL_FORMATS[encoding].bytes_per_pixel
    out = image_msg_to_rgb(msg)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)
    np.testing.assert_array_equal(image_msg_to_rgb(padded(msg, 5)), rgb)


@pytest.mark.parametrize("encoding", GREY)
def test_grey_encodings_round_trip_grey_images_exactly(encoding):
    rgb = grey_rgb()
    msg = rgb_to_image_msg(rgb, encoding)
    np.testing.assert_array_equal(image_msg_to_rgb(msg), rgb)
    np.testing.assert_array_equal(image_msg_to_rgb(padded(msg, 3)), rgb)


@pytest.mark.parametrize("encoding", YUV)
def test_yuv422_encodings_round_trip_within_rounding(encoding):
    rgb = smooth_rgb()
    msg = rgb_to_image_msg(rgb, encoding)
    assert msg.step == 2 * rgb.shape[1]
    for out in (image_msg_to_rgb(msg), image_msg_to_rgb(padded(msg, 4))):
        assert np.abs(out.astype(int) - rgb).max() <= 4


@pytest.mark.parametrize("encoding,pixel", [("bgr8", [0, 0, 255]), ("bgra8", [0, 0, 255, 9]),
                                            ("rgb8", [255, 0, 0]), ("rgba8", [255, 0, 0, 9])])
def test_channel_order_of_hand_made_messages(encoding, pixel):
    msg = hand_made(encoding, [pixel * 2], width=2, pad=3)
    np.testing.assert_array_equal(image_msg_to_rgb(msg), [[[255, 0, 0]] * 2])


@pytest.mark.parametrize("encoding,row", [("yuv422", [128, 200, 128, 40]),
                                          ("uyvy", [128, 200, 128, 40]),
                                          ("yuv422_yuy2", [200, 128, 40, 128]),
                                          ("yuyv", [200, 128, 40, 128])])
def test_yuv_byte_order_of_hand_made_messages(encoding, row):
    out = image_msg_to_rgb(hand_made(encoding, [row], width=2, pad=2)).astype(int)
    assert np.ptp(out[0, 0]) <= 1 and np.ptp(out[0, 1]) <= 1  # neutral chroma: grey
    assert out[0, 0, 0] > 180 and out[0, 1, 0] < 50  # bright pixel first, then dark


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
@pytest.mark.parametrize("big_endian", [False, True])
def test_16_bit_keeps_the_high_byte_in_either_byte_order(encoding, big_endian):
    msg = hand_made(encoding, [[0x1234, 0xFF00, 0x00FF, 0xFFFF]], width=4, dtype="u2",
                    is_bigendian=big_endian, pad=2)
    out = image_msg_to_rgb(msg)
    np.testing.assert_array_equal(out[0, :, 0], [0x12, 0xFF, 0x00, 0xFF])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def good_message() -> Image:
    return rgb_to_image_msg(random_rgb(2, 4), "rgb8")


@pytest.mark.parametrize("change,field,reason", [
    ({"encoding": "32FC1"}, "Image.encoding", "encoding"),
    ({"encoding": "bayer_rggb8"}, "Image.encoding", "encoding"),
    ({"step": 11}, "Image.step", "step"),
    ({"data": bytes(23)}, "Image.data", "size"),
    ({"step": 13, }, "Image.data", "size"),
    ({"data": b""}, "Image.data", "empty"),
    ({"height": 0, "data": b"", }, "height=0", "empty"),
    ({"width": 0}, "width=0", "empty"),
    ({"encoding": "yuv422", "width": 3, "step": 6, "data": bytes(12)}, "Image.width",
     "odd_width"),
    ({"width": 5000, "height": 4000, "step": 15000}, "5000x4000", "too_large"),
])
def test_bad_messages_name_the_field_and_the_reason(change, field, reason):
    msg = good_message()
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(InputError, match=field.replace(".", r"\.")) as raised:
        image_msg_to_rgb(msg)
    assert raised.value.reason == reason


def test_bad_arrays_are_rejected_when_encoding():
    with pytest.raises(InputError, match="expected uint8"):
        rgb_to_image_msg(np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="expected uint8"):
        rgb_to_image_msg(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(InputError, match="encoding 'jpeg'"):
        rgb_to_image_msg(random_rgb(), "jpeg")
    with pytest.raises(InputError, match="odd"):
        rgb_to_image_msg(random_rgb(2, 3), "yuyv")


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_compressed_images_decode_to_rgb(fmt):
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16] = [200, 30, 30]  # red left, blue right: flat 16x16 JPEG blocks survive
    rgb[:, 16:] = [20, 40, 210]
    ok, data = cv2.imencode("." + fmt, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    out = compressed_image_msg_to_rgb(CompressedImage(format=fmt, data=data.tobytes()))
    assert out.shape == (16, 32, 3) and out.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(out, rgb)
    for columns in (slice(0, 12), slice(20, 32)):  # away from the edge JPEG smears
        assert np.abs(out[:, columns].astype(int) - rgb[:, columns]).max() <= 10


def test_grey_png_decodes_to_three_channels():
    grey = grey_rgb(4, 4)[:, :, 0]
    data = cv2.imencode(".png", grey)[1].tobytes()
    out = compressed_image_msg_to_rgb(CompressedImage(format="png", data=data))
    np.testing.assert_array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("data,reason", [
    (b"", "empty"), (b"not an image at all", "format"), (b"GIF89a" + bytes(20), "format"),
    (b"\xff\xd8\xff\xda" + bytes(20), "decode"),  # scan before any frame header
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "decode"),  # cut off before the frame header
    (PNG_SIGNATURE + bytes(8), "decode"),
])
def test_bad_compressed_images_raise_input_error(data, reason):
    with pytest.raises(InputError, match="CompressedImage.data") as raised:
        compressed_image_msg_to_rgb(CompressedImage(format="jpeg", data=data))
    assert raised.value.reason == reason


def png_chunk(kind: bytes, body: bytes) -> bytes:
    """One PNG chunk: length, type, body, CRC of type + body."""
    return (len(body).to_bytes(4, "big") + kind + body
            + zlib.crc32(kind + body).to_bytes(4, "big"))


def grey_png_bomb(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG of black rows: a few hundred KB that decode to width x height."""
    squeeze = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join(squeeze.compress(row) for _ in range(height)) + squeeze.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def test_decompression_bomb_is_refused_from_its_header_before_decoding():
    bomb = grey_png_bomb(12000, 12000)
    assert len(bomb) < 200_000  # 140 KB that would decode to 412 MiB of RGB
    assert compressed_image_size(np.frombuffer(bomb, np.uint8)) == (12000, 12000)
    with pytest.raises(InputError, match="12000x12000") as raised:
        compressed_image_msg_to_rgb(CompressedImage(format="png", data=bomb))
    assert raised.value.reason == "too_large"


@pytest.mark.parametrize("fmt", [".png", ".jpg"])
def test_header_size_matches_the_encoded_image_and_the_pixel_limit_applies(fmt):
    bgr = np.random.default_rng(1).integers(0, 256, (23, 37, 3), np.uint8)
    data = cv2.imencode(fmt, bgr)[1]
    assert compressed_image_size(data) == (37, 23)
    msg = CompressedImage(format=fmt[1:], data=data.tobytes())
    assert compressed_image_msg_to_rgb(msg, max_pixels=37 * 23).shape == (23, 37, 3)
    with pytest.raises(InputError, match="37x23") as raised:
        compressed_image_msg_to_rgb(msg, max_pixels=37 * 23 - 1)
    assert raised.value.reason == "too_large"
