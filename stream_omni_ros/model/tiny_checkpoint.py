"""Tiny random Stream-Omni checkpoints in the real on-disk format, for tests.

See doc/model.md §12.3.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save_file

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.config import StreamOmniConfig
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
}
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
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in StreamOmniForCausalLM(config).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in sorted(shapes.items()):
        noise = torch.randn(shape, generator=generator)
        if key.endswith("position_ids"):
            continue  # a non-persistent SigLIP buffer, never in a checkpoint
        if len(shape) == 1 and "norm" in key:
            tensors[key] = 1.0 + 0.1 * noise
        elif len(shape) == 1:
            tensors[key] = 0.1 * noise  # biases, image_newline
        elif "embed" in key or key == "text_to_audio_proj.weight":
            tensors[key] = 0.5 * noise
        else:
            tensors[key] = noise / math.sqrt(math.prod(shape[1:]))  # unit-variance outputs
    return tensors


def write_safetensors_shards(tensors: Mapping[str, torch.Tensor], folder: Path,
                             max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> list[Path]:
    """Save like `save_pretrained`: model-0000k-of-0000n.safetensors + the index json."""
    shards: list[dict[str, torch.Tensor]] = [{}]
    shard_bytes = 0
    for key, tensor in tensors.items():
        size = tensor.numel() * tensor.element_size()
        if shards[-1] and shard_bytes + size > max_shard_bytes:
            shards.append({})
            shard_bytes = 0
        shards[-1][key] = tensor.contiguous()
        shard_bytes += size
    paths, weight_map = [], {}
    for number, shard in enumerate(shards, start=1):
        path = folder / f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(path), metadata={"format": "pt"})
        weight_map.update({key: path.name for key in shard})
        paths.append(path)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return paths


def write_tiny_checkpoint(folder: str | Path, variant: str = "anyres", seed: int = 0,
                          max_shard_bytes: int = DEFAULT_SHARD_BYTES) -> Path:
    """Write config, generation config, sharded random weights and the tiny tokenizer."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw = tiny_config_dict(variant)
    config = StreamOmniConfig.from_dict(raw)
    (folder / "config.json").write_text(json.dumps(raw, indent=2))
    (folder / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG, indent=2))
    write_safetensors_shards(random_state_dict(config, seed), folder, max_shard_bytes)
    build_tiny_tokenizer(num_units=int(raw["audio_vocab_size"])).save_pretrained(str(folder))
    return folder
