"""Image preprocessing (doc/model.md §4.2): crop modes, tiling, value range and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest

from stream_omni_ros.errors import CheckpointError, InputError
from stream_omni_ros.model import anyres
from stream_omni_ros.model.vision import VisionSettings, preprocess_image

GREY_127 = 127 / 255 * 2 - 1  # the pad colour after normalisation


def test_square_mode_one_crop_in_unit_range(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="square", mm_patch_merge_type="flat")
    rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    crops = preprocess_image(rgb, settings)
    assert tuple(crops.pixels.shape) == (1, 3, 56, 56)
    assert crops.pixels.dtype.is_floating_point and crops.grid is None
    assert crops.image_size == (640, 480)
    assert crops.pixels.min() >= -1.0 and crops.pixels.max() <= 1.0


def test_square_mode_channels_and_scaling(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="square")
    rgb = np.zeros((30, 70, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 255, 51
    pixels = preprocess_image(rgb, settings).pixels[0]
    assert pixels[0].eq(1.0).all() and pixels[1].eq(-1.0).all()
    assert np.allclose(pixels[2].numpy(), 51 / 255 * 2 - 1, atol=1e-6)


def test_normalisation_is_bit_exact_with_the_original_formula(tiny_settings):
    rgb = np.random.default_rng(3).integers(0, 256, (56, 56, 3), dtype=np.uint8)  # no resize
    pixels = preprocess_image(rgb, tiny_settings(image_aspect_ratio="square")).pixels[0]
    rescaled = (rgb.astype(np.float64) * (1 / 255)).astype(np.float32)
    expected = (rescaled - np.float32(0.5)) / np.float32(0.5)
    np.testing.assert_array_equal(pixels.numpy(), expected.transpose(2, 0, 1))


def test_pad_mode_centres_on_grey(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="pad")
    white_wide = np.full((50, 100, 3), 255, dtype=np.uint8)
    pixels = preprocess_image(white_wide, settings).pixels[0, 0].numpy()
    assert np.allclose(pixels[0], GREY_127, atol=1e-6)  # top band is padding
    assert np.allclose(pixels[-1], GREY_127, atol=1e-6)
    assert np.allclose(pixels[28], 1.0, atol=1e-6)  # middle row is the image


@pytest.mark.parametrize(
    ("size", "best", "grid"),
    [((112, 112), (112, 112), (2, 2)), ((200, 60), (168, 56), (1, 3)),
     ((60, 200), (56, 168), (3, 1)), ((30, 30), (56, 56), (1, 1)),
     ((640, 480), (112, 112), (2, 2))],
)
def test_anyres_best_resolution_and_tile_count(tiny_settings, size, best, grid):
    settings = tiny_settings()
    assert anyres.select_best_resolution(size, settings.grid_pinpoints) == best
    rgb = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    crops = preprocess_image(rgb, settings)
    assert crops.grid == grid
    assert tuple(crops.pixels.shape) == (1 + grid[0] * grid[1], 3, 56, 56)


def test_anyres_tiles_are_row_major_after_the_base(tiny_settings):
    rgb = np.zeros((112, 112, 3), dtype=np.uint8)
    rgb[:56, :56] = (255, 0, 0)  # top-left red
    rgb[:56, 56:] = (0, 255, 0)  # top-right green
    rgb[56:, :56] = (0, 0, 255)  # bottom-left blue
    rgb[56:, 56:] = (255, 255, 255)
    pixels = preprocess_image(rgb, tiny_settings()).pixels
    centre_colours = [tuple(pixels[i, :, 28, 28].tolist()) for i in range(1, 5)]
    assert centre_colours == [(1, -1, -1), (-1, 1, -1), (-1, -1, 1), (1, 1, 1)]
    assert tuple(pixels[0, :, 10, 10].tolist()) == (1, -1, -1)  # base = whole image resized


def test_anyres_letterbox_is_black_and_centred(tiny_settings):
    white = np.full((60, 200, 3), 255, dtype=np.uint8)  # fits 168x51 inside 168x56
    pixels = preprocess_image(white, tiny_settings()).pixels
    tile = pixels[1, 0].numpy()
    assert np.allclose(tile[:2], -1.0) and np.allclose(tile[-3:], -1.0)
    assert np.allclose(tile[2:53], 1.0, atol=1e-6)


def test_grid_pinpoint_range_string_expands_in_crop_pixels():
    pinpoints = anyres.parse_grid_pinpoints("(1x1),...,(3x3)", 56)
    assert len(pinpoints) == 9
    assert pinpoints[:4] == ((56, 56), (56, 112), (56, 168), (112, 56))
    assert pinpoints[-1] == (168, 168)


@pytest.mark.parametrize(
    "bad",
    [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8), np.zeros((0, 8, 3), np.uint8),
     np.zeros((8, 8, 3), np.float32), np.full((8, 8, 3), np.nan, np.float32),
     [[[0, 0, 0]]], np.zeros((2, 8, 8, 3), np.uint8)],
)
def test_bad_images_raise_input_error_naming_the_input(tiny_settings, bad):
    with pytest.raises(InputError, match=r"shape|dtype|numpy"):
        preprocess_image(bad, tiny_settings())


def test_nan_image_error_mentions_nan(tiny_settings):
    with pytest.raises(InputError, match="NaN"):
        preprocess_image(np.full((4, 4, 3), np.nan), tiny_settings())


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"image_aspect_ratio": None}, "image_aspect_ratio"),
     ({"image_grid_pinpoints": None}, "image_grid_pinpoints"),
     ({"image_grid_pinpoints": [[50, 56]]}, "image_grid_pinpoints"),
     ({"image_aspect_ratio": "anyres_max_x"}, "image_aspect_ratio"),
     ({"mm_patch_merge_type": "maxpool2x2"}, "mm_patch_merge_type")],
)
def test_bad_vision_fields_raise_checkpoint_error(tiny_raw, overrides, field):
    with pytest.raises(CheckpointError, match=field):
        VisionSettings.from_config(tiny_raw(**overrides))
