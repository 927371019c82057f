"""Device memory of the assistant per part and setting, computed from the real tensor shapes.

The model is built on the meta device (no memory), so the figures are exact parameter and
buffer counts; quantized bytes follow the storage rules of model/quantization.py. The vocoder is
built on meta as well; the ONNX speech tokenizer's tensors are counted from its architecture
(doc/model.md §5.1). KV caches, the largest transient (the CTC soft mapping of a whole
utterance) and a fixed runtime reserve complete what a setting needs on one device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.quantization import (QUANTIZATIONS, is_quantized_name,
                                                quantized_weight_bytes)
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM

DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}
GIB = 1 << 30
# CUDA context, cuBLAS/cuDNN workspaces and allocator slack that no tensor count shows.
RUNTIME_RESERVE_BYTES = GIB
# Two turns' caches can be alive at once: the running one and the next, prepared early.
CONCURRENT_TURNS = 2
# System prompt, chat headers and template ids around the content of a turn.
PROMPT_SLACK = 128
VOCAB_PARTS = ("model.embed_tokens", "lm_head", "audio_to_text_proj",
               "model.audio_embed_tokens", "audio_lm_head", "text_to_audio_proj")
# CosyVoice speech_tokenizer_v1 (25 Hz): two convolutions, 6 blocks of width 1280, 4096 codes.
TOKENIZER_MELS, TOKENIZER_WIDTH, TOKENIZER_BLOCKS, TOKENIZER_CODES = 128, 1280, 6, 4096


@dataclass(frozen=True)
class Setting:
    """How the Stream-Omni weights are stored: a float type and a quantization."""

    dtype: str = "bf16"
    quantization: str = "none"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPE_BYTES or self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"memory setting ({self.dtype!r}, {self.quantization!r}); "
                              f"expected a dtype of {list(DTYPE_BYTES)} and a quantization of "
                              f"{list(QUANTIZATIONS)}")

    @property
    def label(self) -> str:
        """bf16, 8bit or 4bit (the dtype names unquantized settings)."""
        return self.dtype if self.quantization == "none" else self.quantization


@dataclass(frozen=True)
class Context:
    """Cache sizes: LLM and speech-side positions of one turn, and the vocoder's dtype."""

    llm_positions: int
    speech_positions: int
    ctc_positions: int  # speech positions mapped through the CTC head at once
    vocoder_dtype: str = "fp32"
    speech_out: bool = True


@dataclass(frozen=True)
class PartBytes:
    """One row of the memory table."""

    name: str
    params: int
    bytes: int


def meta_model(config: StreamOmniConfig) -> StreamOmniForCausalLM:
    """The model with every tensor on the meta device (shapes only)."""
    with torch.device("meta"):
        return StreamOmniForCausalLM(config)


def tensor_bytes(model: nn.Module, prefixes: Iterable[str], setting: Setting) -> tuple[int, int]:
    """(element count, bytes in this setting) of the parameters and buffers under prefixes."""
    prefixes = tuple(prefixes)
    modules = dict(model.named_modules())
    count = size = 0
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        if not any(name == p or name.startswith(p + ".") for p in prefixes):
            continue
        owner, _, leaf = name.rpartition(".")
        count += tensor.numel()
        if (setting.quantization != "none" and leaf == "weight"
                and is_quantized_name(owner, modules[owner])):
            size += quantized_weight_bytes(tuple(tensor.shape), setting.quantization)
        elif tensor.is_floating_point():
            size += tensor.numel() * DTYPE_BYTES[setting.dtype]
        else:
            size += tensor.numel() * tensor.element_size()
    return count, size


def model_parts(config: StreamOmniConfig) -> dict[str, tuple[str, ...]]:
    """Table row name -> module prefixes, for this config's stacks and vocabularies."""
    c = config
    parts = {f"LLM ({c.num_hidden_layers} layers + norm)": ("model.layers", "model.norm"),
             f"bottom speech stack ({c.num_bottom_audio_layers} layers)":
                 ("model.bottom_audio_layers", "model.audio_norm"),
             f"top speech stack ({c.num_top_audio_layers} layers, cross-attention)":
                 ("model.top_audio_layers", "model.top_audio_norm")}
    for name in VOCAB_PARTS:
        parts[name] = (name,)
    if config.has_vision:
        parts["vision (SigLIP tower + projector)"] = (
            "model.vision_tower", "model.mm_projector", "model.image_newline")
    return parts


def vocoder_params() -> int:
    """Parameters and buffers of CosyVoice-300M-25Hz flow + HiFT (built on meta)."""
    from stream_omni_ros.vocoder.flow import Flow, FlowConfig
    from stream_omni_ros.vocoder.hift import HiftConfig, HiFTGenerator

    with torch.device("meta"):
        parts = (Flow(FlowConfig()), HiFTGenerator(HiftConfig()))
    return sum(t.numel() for part in parts for t in list(part.parameters()) + list(part.buffers()))


def speech_tokenizer_params() -> int:
    """Weights of speech_tokenizer_v1.onnx (25 Hz) from its architecture (doc/model.md §5.1)."""
    mels, width, codes = TOKENIZER_MELS, TOKENIZER_WIDTH, TOKENIZER_CODES
    convs = mels * width * 3 + width + width * width * 3 + width
    attention = 4 * width * width + 3 * width  # q, k, v, out; k has no bias
    mlp = 2 * 4 * width * width + 4 * width + width
    norms = 2 * 2 * width
    return convs + TOKENIZER_BLOCKS * (attention + mlp + norms) + 2 * width + codes * width


def kv_cache_bytes(config: StreamOmniConfig, context: Context, setting: Setting) -> int:
    """Keys and values of the three stacks for CONCURRENT_TURNS turns (model dtype)."""
    per_position = 2 * config.num_key_value_heads * config.head_dim * DTYPE_BYTES[setting.dtype]
    positions = (config.num_hidden_layers * context.llm_positions
                 + (config.num_bottom_audio_layers + config.num_top_audio_layers)
                 * context.speech_positions)
    hidden = context.speech_positions * config.hidden_size * DTYPE_BYTES[setting.dtype]
    return CONCURRENT_TURNS * (positions * per_position + hidden)


def ctc_workspace_bytes(config: StreamOmniConfig, context: Context, setting: Setting) -> int:
    """CTC logits of an utterance, their float32 softmax and its model-dtype copy."""
    per_position = config.text_vocab_size * (2 * DTYPE_BYTES[setting.dtype] + 4)
    return context.ctc_positions * per_position


def estimate(config: StreamOmniConfig, context: Context, setting: Setting,
             model: StreamOmniForCausalLM | None = None) -> list[PartBytes]:
    """Every row of the memory table for one setting; the last row is the total."""
    model = model if model is not None else meta_model(config)
    rows = [PartBytes(name, *tensor_bytes(model, prefixes, setting))
            for name, prefixes in model_parts(config).items()]
    vocoder_bytes = DTYPE_BYTES[context.vocoder_dtype]
    if context.speech_out:
        count = vocoder_params()
        rows.append(PartBytes(f"vocoder (flow + HiFT, {context.vocoder_dtype})", count,
                              count * vocoder_bytes))
    count = speech_tokenizer_params()
    rows.append(PartBytes("speech tokenizer (ONNX, fp32)", count, count * 4))
    rows.append(PartBytes(f"KV caches ({context.llm_positions} LLM + "
                          f"{context.speech_positions} speech positions, x{CONCURRENT_TURNS})",
                          0, kv_cache_bytes(config, context, setting)))
    rows.append(PartBytes(f"CTC soft mapping ({context.ctc_positions} positions at once)", 0,
                          ctc_workspace_bytes(config, context, setting)))
    rows.append(PartBytes("runtime reserve (CUDA context, workspaces)", 0,
                          RUNTIME_RESERVE_BYTES))
    rows.append(PartBytes("total", sum(r.params for r in rows), sum(r.bytes for r in rows)))
    return rows


def required_bytes(config: StreamOmniConfig, context: Context, setting: Setting) -> int:
    """What the setting needs on one device in all (the total row of estimate)."""
    return estimate(config, context, setting)[-1].bytes


def check_fits(required: int, free: int, device: str, setting: Setting) -> None:
    """Refuse a setting that needs more than the device has free, naming both numbers."""
    if required > free:
        raise ConfigError(
            f"{setting.label} weights need about {required / GIB:.1f} GiB on {device} "
            f"(weights, vocoder, speech tokenizer, KV caches, workspace) but only "
            f"{free / GIB:.1f} GiB is free there; expected a smaller setting (quantization "
            f"8bit or 4bit), shorter contexts (model.max_input_len, max_new_tokens/units), "
            f"speech.enabled false, or a larger device")


def free_device_bytes(device: str) -> int | None:
    """Free bytes of a CUDA device (torch.cuda.mem_get_info); None for the CPU."""
    if torch.device(device).type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(free)


def image_tokens(model: StreamOmniForCausalLM, size: tuple[int, int] | None = None) -> int:
    """LLM tokens of one (width, height) image; None: the largest any image makes."""
    settings = model.model.vision_settings
    if settings is None:
        return 0
    from stream_omni_ros.model.vision import count_image_tokens

    sizes = [size] if size else [(w, h) for h, w in settings.grid_pinpoints]
    return max(count_image_tokens(s, settings) for s in sizes or [(settings.image_size,) * 2])


def turn_context(model: StreamOmniForCausalLM, max_input_len: int, max_new_tokens: int,
                 max_new_units: int, history_tokens: int, vocoder_dtype: str = "fp32",
                 speech_out: bool = True, image_size: tuple[int, int] | None = None,
                 ) -> Context:
    """Cache sizes of the longest turn these limits allow (one image, full history)."""
    llm = (PROMPT_SLACK + history_tokens + image_tokens(model, image_size) + max_input_len
           + max_new_tokens)
    speech = PROMPT_SLACK + max_input_len + (max_new_units if speech_out else 0)
    return Context(llm, speech, max_input_len, vocoder_dtype, speech_out)
