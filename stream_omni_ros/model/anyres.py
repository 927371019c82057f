"""Geometry of LLaVA-style anyres tiling: grid pinpoints, best resolution, unpadding, downscale.

Plain numbers only; vision.py turns them into image tokens.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from stream_omni_ros.errors import CheckpointError

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
