"""Geometry of LLaVA-style anyres tiling: grid pinpoints, best resolution, unpadding, downscale."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from stream_omni_ros.errors import CheckpointError, InputError

if TYPE_CHECKING:  # vision.py imports this module; the settings types are only annotations
    from stream_omni_ros.model.vision import ImageCrops, VisionSettings

_GRID_RANGE = re.compile(r"\((\d+)x(\d+)\)")
_ANYRES_MAX = re.compile(r"^anyres_max_(\d+)$")


def parse_grid_pinpoints(value: object, crop_size: int) -> tuple[tuple[int, int], ...]:
    """Candidate (width, height) resolutions from config.json's `image_grid_pinpoints`."""
    if isinstance(value, str) and "x" in value:
        return _expand_grid_range(value, crop_size)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise CheckpointError(
                f"config.json field image_grid_pinpoints={value!r} is neither a '(AxB),...,(CxD)'"
                f" range nor a JSON list of [width, height] pairs: {error}"
            ) from error
    if not isinstance(value, Sequence) or not value:
        raise CheckpointError(
            f"config.json field image_grid_pinpoints={value!r}: expected a non-empty list of"
            " [width, height] pairs or a '(AxB),...,(CxD)' string"
        )
    pairs = []
    for pair in value:
        if (
            not isinstance(pair, Sequence)
            or len(pair) != 2
            or not all(isinstance(side, int) and side > 0 for side in pair)
        ):
            raise CheckpointError(
                f"config.json field image_grid_pinpoints holds {pair!r}: expected [width, height]"
                " with positive integers"
            )
        pairs.append((int(pair[0]), int(pair[1])))
    return tuple(pairs)


def _expand_grid_range(text: str, crop_size: int) -> tuple[tuple[int, int], ...]:
    """All tile grids from the first to the last '(AxB)' of the string, in crop-size pixels."""
    matches = _GRID_RANGE.findall(text)
    if not matches:
        raise CheckpointError(
            f"config.json field image_grid_pinpoints={text!r}: expected '(AxB),...,(CxD)'"
        )
    first_w, first_h = (int(side) for side in matches[0])
    last_w, last_h = (int(side) for side in matches[-1])
    # Same enumeration order as the original (width outer, height inner): ties keep the first.
    return tuple(
        (cols * crop_size, rows * crop_size)
        for cols in range(first_w, last_w + 1)
        for rows in range(first_h, last_h + 1)
    )


def max_tiles_of(image_aspect_ratio: str) -> int | None:
    """N of an `anyres_max_N` mode, None for every other mode."""
    match = _ANYRES_MAX.match(image_aspect_ratio)
    return int(match.group(1)) if match else None


def select_best_resolution(
    image_size: tuple[int, int], candidates: Sequence[tuple[int, int]]
) -> tuple[int, int]:
    """The candidate (w, h) keeping the most image pixels, ties broken by the least waste."""
    width, height = image_size
    best = candidates[0]
    best_effective, best_wasted = -1, math.inf
    for cand_w, cand_h in candidates:
        scale = min(cand_w / width, cand_h / height)
        effective = min(int(width * scale) * int(height * scale), width * height)
        wasted = cand_w * cand_h - effective
        if effective > best_effective or (effective == best_effective and wasted < best_wasted):
            best, best_effective, best_wasted = (cand_w, cand_h), effective, wasted
    return best


def fit_inside(image_size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int]:
    """Size (w, h) of the image resized to fit `target` with its aspect ratio kept."""
    width, height = image_size
    target_w, target_h = target
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        return target_w, min(math.ceil(height * scale_w), target_h)
    return min(math.ceil(width * scale_h), target_w), target_h


def unpad_crop(
    map_height: int, map_width: int, image_size: tuple[int, int]
) -> tuple[slice, slice]:
    """Row and column slices of a stitched feature map that drop the letterbox padding."""
    width, height = image_size
    if width / height > map_width / map_height:
        kept = int(height * (map_width / width))
        pad = (map_height - kept) // 2
        return slice(pad, map_height - pad), slice(0, map_width)
    kept = int(width * (map_height / height))
    pad = (map_width - kept) // 2
    return slice(0, map_height), slice(pad, map_width - pad)


def downscaled_shape(
    height: int, width: int, max_tiles: int, tokens_per_side: int
) -> tuple[int, int] | None:
    """Target (h, w) of the anyres_max_N bilinear downscale, None when it does not apply."""
    times = math.sqrt(height * width / (max_tiles * tokens_per_side**2))
    if times <= 1.1:
        return None
    return int(height // times), int(width // times)


def merge_image_features(
    features: torch.Tensor,
    crops: ImageCrops,
    settings: VisionSettings,
    image_newline: torch.Tensor | None = None,
) -> torch.Tensor:
    """Projected crop features [n, P, H] of one image -> its LLM tokens [n_tokens, H]."""
    n, P, C = features.shape
    if crops.grid is None or settings.mm_patch_merge_type == "flat":
        return features.reshape(n * P, C)
    rows, cols = crops.grid
    side = settings.tokens_per_side
    if n != 1 + rows * cols or P != side * side:
        raise InputError(
            f"image features have shape {tuple(features.shape)}: expected"
            f" [{1 + rows * cols}, {side * side}, hidden] for a {rows}x{cols} tile grid")
    tiles = features[1:].view(rows, cols, side, side, C)  # [rows, cols, y, x, C]
    if "unpad" in settings.mm_patch_merge_type:
        grid_tokens = _unpadded_tokens(tiles, crops.image_size, settings, image_newline)
    else:
        grid_tokens = tiles.permute(0, 2, 1, 3, 4).reshape(rows * side * cols * side, C)
    if "nobase" in settings.mm_patch_merge_type:
        return grid_tokens
    return torch.cat([features[0], grid_tokens], dim=0)


def _unpadded_tokens(
    tiles: torch.Tensor,
    image_size: tuple[int, int],
    settings: VisionSettings,
    image_newline: torch.Tensor | None,
) -> torch.Tensor:
    """Stitch tiles, drop letterbox rows/cols, maybe downscale, end every row with a newline."""
    if image_newline is None:
        raise CheckpointError(
            f"mm_patch_merge_type={settings.mm_patch_merge_type!r} needs model.image_newline,"
            " which the checkpoint does not provide")
    rows, cols, side, _, C = tiles.shape
    fmap = tiles.permute(4, 0, 2, 1, 3).reshape(C, rows * side, cols * side)  # [C, Y, X]
    keep_rows, keep_cols = unpad_crop(rows * side, cols * side, image_size)
    fmap = fmap[:, keep_rows, keep_cols]
    if settings.max_tiles is not None:
        target = downscaled_shape(fmap.shape[1], fmap.shape[2], settings.max_tiles, side)
        if target is not None:
            fmap = F.interpolate(fmap[None], size=target, mode="bilinear")[0]  # [C, h, w]
    newline = image_newline.to(fmap.dtype).view(C, 1, 1).expand(C, fmap.shape[1], 1)
    fmap = torch.cat([fmap, newline], dim=2)  # [C, h, w + 1]
    return fmap.flatten(1, 2).transpose(0, 1)  # [h * (w + 1), C]


def count_image_tokens(image_size: tuple[int, int], settings: VisionSettings) -> int:
    """Number of LLM tokens one image of (width, height) becomes, without running the tower."""
    side = settings.tokens_per_side
    per_crop = side * side
    if not settings.is_anyres:
        return per_crop
    best_w, best_h = select_best_resolution(image_size, settings.grid_pinpoints)
    rows, cols = best_h // settings.image_size, best_w // settings.image_size
    merge = settings.mm_patch_merge_type
    if merge == "flat":
        return (1 + rows * cols) * per_crop
    base = 0 if "nobase" in merge else per_crop
    if "unpad" not in merge:
        return base + rows * cols * per_crop
    keep_rows, keep_cols = unpad_crop(rows * side, cols * side, image_size)
    height = keep_rows.stop - keep_rows.start
    width = keep_cols.stop - keep_cols.start
    if settings.max_tiles is not None:
        height, width = downscaled_shape(height, width, settings.max_tiles, side) or (
            height, width)
    return base + height * (width + 1)
