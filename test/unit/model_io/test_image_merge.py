"""Image feature merging and token counts (doc/model.md §4.4, §12.3): unpad, newline, shrink."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stream_omni_ros.model.vision import (
    VisionSettings, count_image_tokens, merge_image_features, preprocess_image)

HIDDEN = 8
NEWLINE = torch.full((HIDDEN,), -7.0)


def so400m_settings(**overrides) -> VisionSettings:
    """The real checkpoint's expected vision fields (no vision_config: so400m defaults)."""
    raw = {"image_aspect_ratio": "anyres_max_9", "image_grid_pinpoints": "(1x1),...,(6x6)",
           "mm_patch_merge_type": "spatial_unpad", "mm_projector_type": "mlp2x_gelu"}
    raw.update(overrides)
    return VisionSettings.from_config(raw)


def merged_for(size: tuple[int, int], settings: VisionSettings) -> torch.Tensor:
    """Merge random features shaped like the tower+projector output for an image of `size`."""
    crops = preprocess_image(np.zeros((size[1], size[0], 3), np.uint8), settings)
    features = torch.randn(crops.pixels.shape[0], settings.tokens_per_side**2, HIDDEN)
    return merge_image_features(features, crops, settings, NEWLINE)


def test_640x480_camera_image_costs_2929_tokens_with_so400m_settings():
    settings = so400m_settings()
    assert settings.tokens_per_side == 27 and settings.num_hidden_layers == 26
    assert count_image_tokens((640, 480), settings) == 2929
    assert count_image_tokens((640, 480), so400m_settings(image_aspect_ratio="square")) == 729


def test_anyres_max_1_square_image_is_downscaled_to_20_grid_tokens(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="anyres_max_1")
    assert count_image_tokens((112, 112), settings) == 36
    tokens = merged_for((112, 112), settings)
    assert tokens.shape == (36, HIDDEN)
    newline_rows = torch.nonzero((tokens == -7.0).all(dim=1)).flatten().tolist()
    assert newline_rows == [16 + 4, 16 + 9, 16 + 14, 16 + 19]  # 4 rows of 4 + newline


@pytest.mark.parametrize("size", [(112, 112), (640, 480), (200, 60), (60, 200), (30, 30)])
@pytest.mark.parametrize(
    "overrides",
    [{}, {"image_aspect_ratio": "anyres_max_1"}, {"image_aspect_ratio": "anyres"},
     {"mm_patch_merge_type": "spatial"}, {"mm_patch_merge_type": "flat"},
     {"mm_patch_merge_type": "spatial_unpad_nobase"},
     {"image_aspect_ratio": "square", "mm_patch_merge_type": "flat"}],
)
def test_merged_length_matches_token_count(tiny_settings, size, overrides):
    settings = tiny_settings(**overrides)
    assert merged_for(size, settings).shape[0] == count_image_tokens(size, settings)


def map_position_features() -> torch.Tensor:
    """Features [5, 16, 2] of a 2x2 tile grid holding each token's (map row, map column)."""
    ys, xs = torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij")
    features = torch.zeros(5, 16, 2)
    for tile, (row, col) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)], start=1):
        features[tile, :, 0] = (row * 4 + ys).flatten().float()
        features[tile, :, 1] = (col * 4 + xs).flatten().float()
    return features


def test_unpad_drops_letterbox_rows_and_keeps_raster_order(tiny_settings):
    settings = tiny_settings()  # 640x480 -> 2x2 tiles -> 8x8 map -> rows 1..6 kept
    crops = preprocess_image(np.zeros((480, 640, 3), np.uint8), settings)
    newline = torch.full((2,), -1.0)
    tokens = merge_image_features(map_position_features(), crops, settings, newline)[16:]
    assert tokens.shape == (6 * 9, 2)
    grid = tokens.view(6, 9, 2)
    assert grid[:, 8].eq(-1.0).all()  # newline closes every row
    assert grid[:, :8, 0].tolist() == [[float(r)] * 8 for r in range(1, 7)]
    assert grid[0, :8, 1].tolist() == [float(c) for c in range(8)]


def test_anyres_max_downscale_is_bilinear(tiny_settings):
    settings = tiny_settings(image_aspect_ratio="anyres_max_1")
    crops = preprocess_image(np.zeros((112, 112, 3), np.uint8), settings)
    newline = torch.full((2,), -1.0)
    grid = merge_image_features(map_position_features(), crops, settings, newline)[16:]
    grid = grid.view(4, 5, 2)
    # Halving with half-pixel centres averages map rows/columns 2i and 2i + 1.
    assert grid[:, 0, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert grid[0, :4, 1].tolist() == [0.5, 2.5, 4.5, 6.5]


def test_spatial_merge_orders_tokens_row_y_col_x(tiny_settings):
    settings = tiny_settings(mm_patch_merge_type="spatial")
    crops = preprocess_image(np.zeros((112, 112, 3), np.uint8), settings)
    features = torch.arange(5 * 16, dtype=torch.float32).view(5, 16, 1)
    tokens = merge_image_features(features, crops, settings, None)[16:, 0]
    # First map row: y = 0 of tile (0, 0) then y = 0 of tile (0, 1).
    assert tokens[:8].tolist() == [16, 17, 18, 19, 32, 33, 34, 35]
