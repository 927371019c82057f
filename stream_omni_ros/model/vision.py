"""Vision path of Stream-Omni: SigLIP tower, projector, image preprocessing and feature merging.

Contract note (IO): transformers 5.x's `SiglipVisionModel` holds `embeddings`/`encoder`/
`post_layernorm` directly (no `vision_model` level), so `SiglipTower.vision_tower` is a small
holder whose `vision_model` attribute is the SiglipVisionModel. State-dict keys are therefore
`vision_tower.vision_model.*`, exactly the checkpoint's `model.vision_tower.vision_tower.*` tail.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel

from stream_omni_ros.errors import CheckpointError, InputError
from stream_omni_ros.model import anyres

__all__ = ["VisionSettings", "ImageCrops", "SiglipTower", "build_projector", "preprocess_image",
           "merge_image_features", "count_image_tokens", "encode_image", "check_rgb"]

try:  # Pillow is installed here (matplotlib depends on it): resize like the original's PIL.
    from PIL import Image as _PilImage
except ImportError:  # pragma: no cover - only on machines without Pillow
    _PilImage = None
    import cv2  # OpenCV's INTER_CUBIC is close to, but not bit-equal with, PIL bicubic

TOWER_FIELDS = ("image_size", "patch_size", "hidden_size", "intermediate_size",
                "num_hidden_layers", "num_attention_heads", "num_channels", "hidden_act",
                "layer_norm_eps")
VISION_LAYER_KEY = re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.encoder\."
                              r"layers\.(\d+)\.")
UNSUPPORTED_MODES = ("highres", "crop_split")


@dataclass(frozen=True)
class VisionSettings:
    """SigLIP tower shape, preprocessing mode and merge rule of one checkpoint."""

    image_size: int = 384
    patch_size: int = 14
    hidden_size: int = 1152
    intermediate_size: int = 4304
    num_hidden_layers: int = 26  # so400m has 27; Stream-Omni drops the last one
    num_attention_heads: int = 16
    num_channels: int = 3
    hidden_act: str = "gelu_pytorch_tanh"
    layer_norm_eps: float = 1e-6
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_aspect_ratio: str = "square"
    grid_pinpoints: tuple[tuple[int, int], ...] = ()
    mm_patch_merge_type: str = "flat"
    projector_type: str = "linear"
    mm_hidden_size: int = 1152

    @classmethod
    def from_config(
        cls, raw: Mapping[str, Any], weight_keys: Iterable[str] | None = None
    ) -> VisionSettings:
        """Read config.json (plus the optional `vision_config` entry and the weight map)."""
        tower = _tower_fields(raw, weight_keys)
        mode = raw.get("image_aspect_ratio")
        if not isinstance(mode, str):
            raise CheckpointError(
                f"config.json field image_aspect_ratio={mode!r}: expected a string such as"
                " 'square', 'pad', 'anyres' or 'anyres_max_9'")
        _check_mode(mode)
        crop = int(tower.get("image_size", cls.image_size))
        pinpoints: tuple[tuple[int, int], ...] = ()
        if "anyres" in mode:
            pinpoints = anyres.parse_grid_pinpoints(raw.get("image_grid_pinpoints"), crop)
            _check_pinpoints(pinpoints, crop)
        merge = str(raw.get("mm_patch_merge_type") or cls.mm_patch_merge_type)
        if merge != "flat" and (not merge.startswith("spatial") or "maxpool" in merge):
            raise CheckpointError(
                f"config.json field mm_patch_merge_type={merge!r}: expected 'flat', 'spatial',"
                " 'spatial_unpad' or a '_nobase' variant")
        return cls(**tower, image_aspect_ratio=mode, grid_pinpoints=pinpoints,
                   mm_patch_merge_type=merge,
                   projector_type=str(raw.get("mm_projector_type") or cls.projector_type),
                   mm_hidden_size=int(raw.get("mm_hidden_size")
                                      or tower.get("hidden_size", cls.hidden_size)))

    @property
    def tokens_per_side(self) -> int:
        """Patch tokens along one side of a crop (27 for so400m at 384 px)."""
        return self.image_size // self.patch_size

    @property
    def is_anyres(self) -> bool:
        """Whether images are tiled (anyres or anyres_max_N)."""
        return "anyres" in self.image_aspect_ratio

    @property
    def max_tiles(self) -> int | None:
        """N of anyres_max_N, else None."""
        return anyres.max_tiles_of(self.image_aspect_ratio)


def _tower_fields(raw: Mapping[str, Any], weight_keys: Iterable[str] | None) -> dict:
    """Tower hyper-parameters from `vision_config`, the layer count from the weight map."""
    tower_raw = raw.get("vision_config") or {}
    if not isinstance(tower_raw, Mapping):
        raise CheckpointError(
            f"config.json field vision_config is {type(tower_raw).__name__}: expected an object")
    tower = {name: tower_raw[name] for name in TOWER_FIELDS if name in tower_raw}
    present = {int(m.group(1)) for m in map(VISION_LAYER_KEY.match, weight_keys or ()) if m}
    if not present:
        return tower
    count = max(present) + 1
    # A full so400m folder holds 27 layers; the original deletes the last one, so more layers
    # than configured are fine (left to the loader as unexpected keys), fewer are not.
    layers = tower.get("num_hidden_layers", min(count, VisionSettings.num_hidden_layers))
    if count < layers:
        raise CheckpointError(
            f"vision tower needs num_hidden_layers={layers} (config.json vision_config or the"
            f" so400m default) but the weight map holds encoder layers 0..{count - 1} only")
    tower["num_hidden_layers"] = layers
    return tower


def _check_mode(mode: str) -> None:
    """Reject modes the original did not use with this checkpoint family."""
    if mode in UNSUPPORTED_MODES or ("anyres" in mode and mode != "anyres"
                                     and anyres.max_tiles_of(mode) is None):
        raise CheckpointError(
            f"config.json field image_aspect_ratio={mode!r} is not supported: expected"
            " 'square', 'pad', 'anyres' or 'anyres_max_<N>'")


def _check_pinpoints(pinpoints: tuple[tuple[int, int], ...], crop: int) -> None:
    """Every candidate resolution must be a whole number of crops."""
    bad = [pair for pair in pinpoints if pair[0] % crop or pair[1] % crop]
    if bad:
        raise CheckpointError(
            f"config.json image_grid_pinpoints {bad} are not multiples of the {crop}-px crop")


@dataclass(frozen=True)
class ImageCrops:
    """Preprocessed crops of one image, with what merging needs to undo the tiling."""

    pixels: torch.Tensor  # float32 [n, 3, S, S] in [-1, 1]; crop 0 is the base when tiled
    image_size: tuple[int, int]  # original (width, height)
    grid: tuple[int, int] | None  # (rows, cols) of tiles after the base crop; None if not tiled


class SiglipVisionHolder(nn.Module):
    """Adds the checkpoint's `vision_model` level above transformers' SiglipVisionModel."""

    def __init__(self, config: SiglipVisionConfig) -> None:
        super().__init__()
        self.vision_model = SiglipVisionModel(config)


class SiglipTower(nn.Module):
    """SigLIP vision encoder without its head; returns features before post_layernorm."""

    def __init__(self, settings: VisionSettings) -> None:
        super().__init__()
        config = SiglipVisionConfig(
            **{name: getattr(settings, name) for name in TOWER_FIELDS}, vision_use_head=False)
        self.image_size = settings.image_size
        self.vision_tower = SiglipVisionHolder(config)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [n, 3, S, S] -> patch features [n, P, C] of the last kept encoder layer."""
        size = self.image_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise InputError(
                f"vision tower got pixels of shape {tuple(pixels.shape)}: expected"
                f" [n, 3, {size}, {size}]")
        model = self.vision_tower.vision_model
        # Embeddings + encoder only: post_layernorm is unused and hidden_states are not kept.
        x = model.embeddings(pixels.to(model.embeddings.patch_embedding.weight.dtype))
        return model.encoder(inputs_embeds=x).last_hidden_state


def build_projector(projector_type: str, mm_hidden: int, hidden: int) -> nn.Module:
    """The mm_projector named in config.json: linear, mlp<N>x_gelu (erf GELU) or identity."""
    if projector_type == "linear":
        return nn.Linear(mm_hidden, hidden)
    if projector_type == "identity":
        if mm_hidden != hidden:
            raise CheckpointError(
                f"mm_projector_type 'identity' needs mm_hidden_size == hidden_size, got"
                f" {mm_hidden} and {hidden}")
        return nn.Identity()
    match = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if match is None or int(match.group(1)) < 1:
        raise CheckpointError(
            f"config.json field mm_projector_type={projector_type!r} is not supported:"
            " expected 'linear', 'identity' or 'mlp<N>x_gelu'")
    layers: list[nn.Module] = [nn.Linear(mm_hidden, hidden)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(approximate="none"), nn.Linear(hidden, hidden)]
    return nn.Sequential(*layers)


def check_rgb(rgb: object) -> np.ndarray:
    """Return `rgb` if it is an RGB uint8 array [H, W, 3]; else raise InputError."""
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"image is a {type(rgb).__name__}: expected a numpy uint8 [H, W, 3]")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"image has shape {rgb.shape}: expected [H, W, 3] RGB")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise InputError(f"image has shape {rgb.shape}: expected a non-empty [H, W, 3]")
    if rgb.dtype != np.uint8:
        nan_note = " and contains NaN" if rgb.dtype.kind == "f" and np.isnan(rgb).any() else ""
        raise InputError(f"image has dtype {rgb.dtype}{nan_note}: expected uint8 RGB")
    return rgb


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 array to (width, height) with bicubic filtering."""
    if _PilImage is None:
        return cv2.resize(rgb, size, interpolation=cv2.INTER_CUBIC)
    resized = _PilImage.fromarray(np.ascontiguousarray(rgb)).resize(
        size, _PilImage.Resampling.BICUBIC)
    return np.asarray(resized)


def _pad_to_square(rgb: np.ndarray, fill: tuple[int, ...]) -> np.ndarray:
    """Centre the image on a square canvas of its longer side."""
    height, width = rgb.shape[:2]
    side = max(height, width)
    canvas = np.empty((side, side, 3), dtype=np.uint8)
    canvas[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top:top + height, left:left + width] = rgb
    return canvas


def _tiles(rgb: np.ndarray, resolution: tuple[int, int], crop: int) -> list[np.ndarray]:
    """Letterbox the image into `resolution` on black and cut it into crops, row-major."""
    target_w, target_h = resolution
    new_w, new_h = anyres.fit_inside((rgb.shape[1], rgb.shape[0]), resolution)
    canvas = np.zeros((target_h, target_w, 3), dtype=np.uint8)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resize_rgb(rgb, (new_w, new_h))
    return [canvas[y:y + crop, x:x + crop]
            for y in range(0, target_h, crop) for x in range(0, target_w, crop)]


def crops_to_pixels(crops: np.ndarray, settings: VisionSettings) -> torch.Tensor:
    """Crops uint8 [n, S, S, 3] -> normalised float32 pixels [n, 3, S, S]."""
    # The original's float64 rescale, float32 cast and normalisation, done once per byte value
    # (a 256-entry table per channel) instead of once per pixel: same bits, ~10x faster.
    levels = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean = np.asarray(settings.image_mean, dtype=np.float32)[:, None]
    std = np.asarray(settings.image_std, dtype=np.float32)[:, None]
    table = (levels[None, :] - mean) / std  # [3, 256]
    pixels = np.empty((crops.shape[0], 3, crops.shape[1], crops.shape[2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], crops[..., channel], out=pixels[:, channel])
    return torch.from_numpy(pixels)


def preprocess_image(rgb: np.ndarray, settings: VisionSettings) -> ImageCrops:
    """One RGB uint8 image [H, W, 3] -> its crops as the configured mode prescribes."""
    image = check_rgb(rgb)
    height, width = image.shape[:2]
    crop = settings.image_size
    grid = None
    if settings.is_anyres:
        best = anyres.select_best_resolution((width, height), settings.grid_pinpoints)
        crops = [resize_rgb(image, (crop, crop))] + _tiles(image, best, crop)
        grid = (best[1] // crop, best[0] // crop)
    elif settings.image_aspect_ratio == "pad":
        fill = tuple(int(mean * 255) for mean in settings.image_mean)  # 127.5 -> 127
        crops = [resize_rgb(_pad_to_square(image, fill), (crop, crop))]
    else:
        crops = [resize_rgb(image, (crop, crop))]
    return ImageCrops(crops_to_pixels(np.stack(crops), settings), (width, height), grid)


@torch.inference_mode()
def encode_image(
    rgb: np.ndarray,
    settings: VisionSettings,
    tower: SiglipTower,
    projector: nn.Module,
    image_newline: torch.Tensor | None,
) -> torch.Tensor:
    """RGB uint8 [H, W, 3] -> image tokens [n_tokens, hidden] on the tower's device and dtype."""
    crops = preprocess_image(rgb, settings)
    weight = tower.vision_tower.vision_model.embeddings.patch_embedding.weight
    features = projector(tower(crops.pixels.to(device=weight.device, dtype=weight.dtype)))
    return merge_image_features(features, crops, settings, image_newline)


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
    keep_rows, keep_cols = anyres.unpad_crop(rows * side, cols * side, image_size)
    fmap = fmap[:, keep_rows, keep_cols]
    if settings.max_tiles is not None:
        target = anyres.downscaled_shape(fmap.shape[1], fmap.shape[2], settings.max_tiles, side)
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
    best_w, best_h = anyres.select_best_resolution(image_size, settings.grid_pinpoints)
    rows, cols = best_h // settings.image_size, best_w // settings.image_size
    merge = settings.mm_patch_merge_type
    if merge == "flat":
        return (1 + rows * cols) * per_crop
    base = 0 if "nobase" in merge else per_crop
    if "unpad" not in merge:
        return base + rows * cols * per_crop
    keep_rows, keep_cols = anyres.unpad_crop(rows * side, cols * side, image_size)
    height = keep_rows.stop - keep_rows.start
    width = keep_cols.stop - keep_cols.start
    if settings.max_tiles is not None:
        height, width = anyres.downscaled_shape(height, width, settings.max_tiles, side) or (
            height, width)
    return base + height * (width + 1)
