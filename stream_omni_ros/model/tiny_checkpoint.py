"""Tiny random Stream-Omni checkpoints in the real on-disk format, for tests.

See doc/model.md §12.3.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import torch
from safetensors.torch import save_file

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.random_weights import FULL_CONFIG, FULL_VISION
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM
from stream_omni_ros.model.tiny_tokenizer import build_tiny_tokenizer

INDEX_FILE = "model.safetensors.index.json"
DEFAULT_SHARD_BYTES = 400_000  # forces several shards (+ index) like the real checkpoint
BASE_CONFIG: dict[str, Any] = {
    "model_type": "stream_omni_llama", "architectures": ["StreamOmniLlamaForCausalLM"],
    "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
    "num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu",
    "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
    "attention_bias": False, "attention_dropout": 0.0, "mlp_bias": False, "pretraining_tp": 1,
    "tie_word_embeddings": False, "initializer_range": 0.02, "bos_token_id": 256,
    "eos_token_id": [257, 264, 265], "pad_token_id": None, "text_vocab_size": 272,
    "audio_vocab_size": 32, "vocab_size": 304, "num_bottom_audio_layers": 2,
    "num_top_audio_layers": 1, "mm_vision_tower": "google/siglip-so400m-patch14-384",
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                      "num_attention_heads": 2, "image_size": 56, "patch_size": 14,
                      "num_channels": 3, "hidden_act": "gelu_pytorch_tanh",
                      "layer_norm_eps": 1e-6},
    "mm_hidden_size": 32, "mm_projector_type": "mlp2x_gelu",
    "mm_patch_merge_type": "spatial_unpad", "image_aspect_ratio": "anyres_max_9",
    "image_grid_pinpoints": [[56, 56], [56, 112], [112, 56], [112, 112], [168, 56], [56, 168]],
    "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
    "tokenizer_padding_side": "right", "torch_dtype": "float32",
}
VISION_FIELDS = ("mm_vision_tower", "vision_config", "mm_hidden_size", "mm_projector_type",
                 "mm_patch_merge_type", "image_aspect_ratio", "image_grid_pinpoints",
                 "mm_use_im_start_end", "mm_use_im_patch_token")
# variant -> (fields to set, fields to remove)
VARIANTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "anyres": ({}, ()),
    "square": ({"image_aspect_ratio": "square", "mm_patch_merge_type": "flat"}, ()),
    "defaults": ({}, ("num_bottom_audio_layers", "num_top_audio_layers")),
    "norope": ({"rope_scaling": None}, ()),
    "fullvocab": ({}, ("text_vocab_size",)),  # doc/model.md §6.4: six matrices of vocab_size rows
    "novision": ({}, VISION_FIELDS),
    # the real 4096-unit codebook, for a speech tokenizer of the real size
    "units4096": ({"audio_vocab_size": 4096, "vocab_size": 272 + 4096}, ()),
    # one layer per stack at Stream-Omni-8B's widths (LLM, speech stacks, SigLIP, projector)
    # with the tiny vocabulary: 0.9 B parameters, stored in bf16
    "fullwidth": ({**{k: FULL_CONFIG[k] for k in ("hidden_size", "intermediate_size",
                                                   "num_attention_heads", "num_key_value_heads")},
                   "num_hidden_layers": 1, "num_bottom_audio_layers": 1,
                   "num_top_audio_layers": 1, "torch_dtype": "bfloat16",
                   **{k: FULL_VISION[k] for k in ("mm_hidden_size", "image_grid_pinpoints")},
                   "vision_config": {**FULL_VISION["vision_config"], "num_hidden_layers": 1}},
                  ()),
}
STORED_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
FULL_WIDTH_SHARD_BYTES = 1 << 29  # one shard in memory at a time while writing
GENERATION_CONFIG = {"bos_token_id": 256, "eos_token_id": [257, 264, 265], "do_sample": True,
                     "temperature": 0.6, "top_p": 0.9}


def tiny_config_dict(variant: str = "anyres") -> dict[str, Any]:
    """config.json content of one tiny variant."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown tiny checkpoint variant {variant!r}; expected one of "
                          f"{sorted(VARIANTS)}")
    updates, removed = VARIANTS[variant]
    raw = copy.deepcopy(BASE_CONFIG)
    raw.update(copy.deepcopy(updates))
    for name in removed:
        raw.pop(name, None)
    return raw


def random_state_dict(config: StreamOmniConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Seeded random fp32 weights for every key of the module tree built from `config`."""
    return dict(random_tensors(config, seed))


def random_tensors(config: StreamOmniConfig, seed: int = 0,
                   ) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, seeded random fp32 weight) one at a time, in key order (see random_state_dict)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in StreamOmniForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    for key, shape in sorted(shapes.items()):
        noise = torch.randn(shape, generator=generator)
        if key.endswith("position_ids"):
            continue  # a non-persistent SigLIP buffer, never in a checkpoint
        if len(shape) == 1 and "norm" in key:
            yield key, noise.mul_(0.1).add_(1.0)
        elif len(shape) == 1:
            yield key, noise.mul_(0.1)  # biases, image_newline
        elif "embed" in key or key == "text_to_audio_proj.weight":
            yield key, noise.mul_(0.5)
        else:
            yield key, noise.div_(math.sqrt(math.prod(shape[1:])))  # unit-variance outputs


def write_safetensors_shards(tensors: Mapping[str, torch.Tensor] | Iterable[
        tuple[str, torch.Tensor]], folder: Path, max_shard_bytes: int = DEFAULT_SHARD_BYTES,
        dtype: torch.dtype | None = None) -> list[Path]:
    """Save like `save_pretrained`: model-0000k-of-0000n.safetensors + the index json.

    Tensors may come one at a time (an iterable of pairs): each shard is written when full,
    so memory holds one shard. dtype, if given, is what floating-point tensors are stored in.
    """
    pairs = tensors.items() if isinstance(tensors, Mapping) else tensors
    written: list[tuple[Path, list[str]]] = []
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = total = 0
    for key, tensor in pairs:
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        size = tensor.numel() * tensor.element_size()
        if shard and shard_bytes + size > max_shard_bytes:
            written.append(_save_shard(shard, folder, len(written) + 1))
            shard, shard_bytes = {}, 0
        shard[key] = tensor.contiguous()
        shard_bytes += size
        total += size
    written.append(_save_shard(shard, folder, len(written) + 1))
    paths, weight_map = [], {}
    for number, (partial, keys) in enumerate(written, start=1):
        path = partial.rename(folder / f"model-{number:05d}-of-{len(written):05d}.safetensors")
        weight_map.update({key: path.name for key in keys})
        paths.append(path)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return paths


def _save_shard(shard: dict[str, torch.Tensor], folder: Path, number: int,
                ) -> tuple[Path, list[str]]:
    """Write one shard under a provisional name (the count of shards is not known yet)."""
    path = folder / f"model-{number:05d}.partial.safetensors"
    save_file(shard, str(path), metadata={"format": "pt"})
    return path, list(shard)


def write_tiny_checkpoint(folder: str | Path, variant: str = "anyres", seed: int = 0,
                          max_shard_bytes: int | None = None) -> Path:
    """Write config, generation config, sharded random weights and the tiny tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = tiny_config_dict(variant)
    config = StreamOmniConfig.from_dict(raw)
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    if max_shard_bytes is None:
        max_shard_bytes = (FULL_WIDTH_SHARD_BYTES if variant == "fullwidth"
                           else DEFAULT_SHARD_BYTES)
    write_safetensors_shards(random_tensors(config, seed), folder, max_shard_bytes,
                             STORED_DTYPES[raw["torch_dtype"]])
    build_tiny_tokenizer(num_units=int(raw["audio_vocab_size"])).save_pretrained(str(folder))
    return folder
