"""8-bit and 4-bit weights with bitsandbytes (LLM.int8 and NF4), on the CPU and on CUDA.

What is quantized, and what is kept in the model dtype, is decided here and nowhere else (the
memory estimate of model/memory.py reads the same rules):

* every Linear of the LLM, bottom and top speech stacks (attention, cross-attention, MLP);
* the three vocabulary-sized heads `lm_head`, `audio_to_text_proj` (CTC) and `audio_lm_head`;
* the two vocabulary-sized tables that are only looked up, `model.audio_embed_tokens` and
  `text_to_audio_proj`.

Kept: `model.embed_tokens` (the CTC soft mapping multiplies the whole matrix, which a quantized
table cannot do without a full dequantized copy), norms, the SigLIP tower and projector (0.4 B
parameters, convolutions), and the vocoder and speech tokenizer (not part of this model).
bitsandbytes >= 0.48 runs both layer kinds on the CPU in plain PyTorch, so the same code is
tested on a machine without a GPU.
"""
from __future__ import annotations

import importlib.util
import logging
from typing import Any, Iterator

import torch
from torch import nn

from stream_omni_ros.errors import ConfigError

QUANTIZATIONS = ("none", "8bit", "4bit")
QUANTIZED_HEADS = ("lm_head", "audio_to_text_proj", "audio_lm_head")
QUANTIZED_TABLES = ("model.audio_embed_tokens", "text_to_audio_proj")
STACKS = ("model.layers", "model.bottom_audio_layers", "model.top_audio_layers")
NF4_BLOCK = 64  # values per NF4 absmax (bitsandbytes' default blocksize)
NESTED_BLOCK = 256  # absmax values per nested (double-quantization) scale
INT8_ROW_SCALE_BYTES = 4  # LLM.int8 keeps one float32 scale per output row (SCB)
CHUNK_VALUES = 1 << 24  # values quantized at once: bounds the float copies bitsandbytes makes


def require_bitsandbytes(quantization: str) -> None:
    """Refuse a quantized setting clearly when bitsandbytes is not installed."""
    if quantization != "none" and importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"quantization={quantization!r} needs the bitsandbytes package "
                          "(pinned in scripts/requirements.txt), which is not installed")


def is_quantized_name(name: str, module: nn.Module) -> bool:
    """Whether the module at this qualified name is replaced in a quantized setting."""
    if name in QUANTIZED_HEADS or name in QUANTIZED_TABLES:
        return True
    return isinstance(module, nn.Linear) and any(name.startswith(s + ".") for s in STACKS)


def quantized_weight_bytes(shape: tuple[int, ...], quantization: str) -> int:
    """Bytes of one [rows, cols] weight as bitsandbytes stores it in this setting."""
    rows, cols = shape
    count = rows * cols
    if quantization == "8bit":
        return count + rows * INT8_ROW_SCALE_BYTES
    if quantization == "4bit":
        blocks = -(-count // NF4_BLOCK)
        nested = -(-blocks // NESTED_BLOCK)
        # packed codes, a uint8 absmax per block, a float32 per nested block, code tables, offset
        return -(-count // 2) + blocks + 4 * nested + 4 * (16 + 256 + 1)
    raise ConfigError(f"quantized_weight_bytes: quantization={quantization!r}; expected 8bit or "
                      "4bit")


def quantization_targets(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) of every module that a quantized setting replaces."""
    for name, module in model.named_modules():
        if is_quantized_name(name, module):
            yield name, module


def quantize_module(model: nn.Module, name: str, quantization: str, device: str,
                    dtype: torch.dtype) -> bool:
    """Replace the module at name if it is a target whose tensors are all loaded.

    The loader calls this after each tensor it assigns, so that the CPU holds the quantized
    model plus one weight in the model dtype, never a whole file or model of them.
    """
    if quantization == "none":
        return False
    module = model.get_submodule(name)
    if type(module) not in (nn.Linear, nn.Embedding) or not is_quantized_name(name, module):
        return False
    if any(tensor.is_meta for tensor in module.parameters()):
        return False
    require_bitsandbytes(quantization)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, _replacement(import_bitsandbytes(), module, quantization, dtype,
                                        device))
    return True


def quantize_model(model: nn.Module, quantization: str, device: str) -> None:
    """Replace the targets with bitsandbytes layers in place, then move everything to device.

    Each weight is quantized on the device a chunk of rows at a time, so the device never
    holds a full-precision copy of a target that was on the CPU.
    """
    if quantization == "none":
        return
    dtype = model.model.norm.weight.dtype
    for name, _ in list(quantization_targets(model)):
        quantize_module(model, name, quantization, device, dtype)
    model.to(device)


def import_bitsandbytes() -> Any:
    """bitsandbytes, without its warning that an optional kernel from a model hub is absent.

    On some CPUs it tries to fetch a faster 4-bit kernel from a hub at import; this project
    never downloads code, and the plain-torch path it falls back to is the tested one.
    """
    cpu_ops = logging.getLogger("bitsandbytes.backends.cpu.ops")
    level = cpu_ops.level
    cpu_ops.setLevel(logging.ERROR)
    try:
        import bitsandbytes
    finally:
        cpu_ops.setLevel(level)
    # LLM.int8 quantizes bf16 activations through float16 by design; its warning says so on
    # every matrix product, which would flood a node's log.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    return bitsandbytes


def _replacement(bnb: Any, module: nn.Module, quantization: str, dtype: torch.dtype,
                 device: str) -> nn.Module:
    if isinstance(module, nn.Embedding):
        return _quantized_table(bnb, module, quantization, dtype, device)
    return _quantized_linear(bnb, module, quantization, dtype, device)


def _quantized_linear(bnb: Any, linear: nn.Linear, quantization: str, dtype: torch.dtype,
                      device: str) -> nn.Module:
    """One LLM.int8 or NF4 (double-quantized) layer holding `linear`'s weights."""
    has_bias = linear.bias is not None
    # Built on meta: bitsandbytes' constructors would allocate a float32 weight of full size.
    if quantization == "8bit":
        layer = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=has_bias,
                                    has_fp16_weights=False, threshold=6.0, device="meta")
        layer.weight = int8_rows(bnb, linear.weight.data, device)
    else:
        layer = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=has_bias,
                                  compute_dtype=dtype, quant_type="nf4",
                                  compress_statistics=True, device="meta")
        layer.weight = nf4_blocks(bnb, linear.weight.data, device)
        # On CPUs with AVX512-BF16 the first call would repack the weight into another layout
        # (unpacking the double-quantized scales, rows a multiple of 32 only); the plain path
        # keeps the stored layout and behaves alike on every CPU.
        layer.support_avx512bf16_for_cpu = False
    if has_bias:
        layer.bias = nn.Parameter(linear.bias.data.to(device), requires_grad=False)
    return layer


def chunk_rows(shape: tuple[int, int], chunk_values: int) -> int:
    """Rows per quantization chunk: whole NF4 blocks, about chunk_values values at most."""
    rows, cols = shape
    per_chunk = max(1, chunk_values // cols)
    while (per_chunk * cols) % NF4_BLOCK and per_chunk < rows:
        per_chunk += 1  # a chunk boundary inside an NF4 block would change its absmax
    return min(rows, per_chunk)


def int8_rows(bnb: Any, weight: torch.Tensor, device: str,
              chunk_values: int = CHUNK_VALUES) -> Any:
    """LLM.int8 codes and row scales of weight [rows, cols], quantized a chunk of rows at once.

    bitsandbytes' own path converts the whole matrix to float16 and float32 first (about 5x
    its bf16 bytes at once: 5 GB for a 132352-row head); the scales are per row, so chunks of
    rows give the same codes and scales.
    """
    rows, cols = weight.shape
    codes = torch.empty(rows, cols, dtype=torch.int8, device=device)
    scales = torch.empty(rows, dtype=torch.float32, device=device)
    step = chunk_rows((rows, cols), chunk_values)
    for start in range(0, rows, step):
        part = weight[start:start + step].to(device=device, dtype=torch.float16)
        codes[start:start + step], scales[start:start + step], _ = (
            bnb.functional.int8_vectorwise_quant(part))
    return bnb.nn.Int8Params(codes, requires_grad=False, has_fp16_weights=False, CB=codes,
                             SCB=scales)


def nf4_blocks(bnb: Any, weight: torch.Tensor, device: str,
               chunk_values: int = CHUNK_VALUES) -> Any:
    """NF4 codes of weight [rows, cols] with double-quantized block scales, by chunks of rows.

    Chunks hold whole blocks of NF4_BLOCK values, so codes and block scales equal those of
    the whole matrix; the scales are then double-quantized together as bitsandbytes does.
    """
    functional = bnb.functional
    rows, cols = weight.shape
    step = chunk_rows((rows, cols), chunk_values)
    codes = torch.empty(-(-rows * cols // 2), 1, dtype=torch.uint8, device=device)
    absmax = torch.empty(-(-rows * cols // NF4_BLOCK), dtype=torch.float32, device=device)
    for start in range(0, rows, step):
        part = weight[start:start + step].to(device)
        packed, state = functional.quantize_4bit(part, blocksize=NF4_BLOCK, quant_type="nf4",
                                                 compress_statistics=False)
        first = start * cols  # a multiple of NF4_BLOCK (see chunk_rows)
        codes[first // 2:first // 2 + packed.shape[0]] = packed.view(-1, 1)
        absmax[first // NF4_BLOCK:first // NF4_BLOCK + state.absmax.numel()] = state.absmax
    offset = absmax.mean()
    nested, nested_state = functional.quantize_blockwise(absmax - offset,
                                                         blocksize=NESTED_BLOCK)
    state = functional.QuantState(
        absmax=nested, shape=weight.shape, dtype=weight.dtype, blocksize=NF4_BLOCK,
        code=functional.get_4bit_type("nf4", device=device), quant_type="nf4", offset=offset,
        state2=nested_state)
    return bnb.nn.Params4bit(codes, requires_grad=False, quant_state=state,
                             blocksize=NF4_BLOCK, compress_statistics=True, quant_type="nf4",
                             bnb_quantized=True)


class CastTable(nn.Module):
    """A quantized lookup table whose rows come back in the model dtype."""

    def __init__(self, table: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.table, self.dtype = table, dtype
        self.num_embeddings, self.embedding_dim = table.num_embeddings, table.embedding_dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows [.., H] of ids [..] (bitsandbytes' 8-bit table returns float32)."""
        return self.table(ids).to(self.dtype)


def _quantized_table(bnb: Any, table: nn.Embedding, quantization: str, dtype: torch.dtype,
                     device: str) -> nn.Module:
    """An 8-bit or NF4 embedding table holding `table`'s rows."""
    rows, width = table.weight.shape
    if quantization == "8bit":
        layer = bnb.nn.Embedding8bit(rows, width, device="meta")
        layer.weight = int8_rows(bnb, table.weight.data, device)
    else:
        layer = bnb.nn.EmbeddingNF4(rows, width, dtype=dtype, device="meta")
        layer.weight = nf4_blocks(bnb, table.weight.data, device)
        layer.weight.module = layer
    return CastTable(layer, dtype)


def stored_bytes(module: nn.Module) -> int:
    """Bytes of every tensor the module holds (quantization states included)."""
    seen: set[int] = set()
    total = 0
    for tensor in _held_tensors(module):
        if id(tensor) not in seen and not tensor.is_meta:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def _held_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    for tensor in list(module.parameters()) + list(module.buffers()):
        yield tensor
        yield from _state_tensors(tensor)
    for sub in module.modules():
        scale = getattr(sub, "state", None)
        if scale is not None and torch.is_tensor(getattr(scale, "SCB", None)):
            yield scale.SCB


def _state_tensors(weight: torch.Tensor) -> Iterator[torch.Tensor]:
    """The tensors of a bitsandbytes weight's scales (absmax, code tables, row scales)."""
    for name in ("SCB", "CB"):
        value = getattr(weight, name, None)
        if torch.is_tensor(value) and value.data_ptr() != weight.data_ptr():
            yield value
    state = getattr(weight, "quant_state", None)
    while state is not None:
        for name in ("absmax", "code", "offset"):
            value = getattr(state, name, None)
            if torch.is_tensor(value):
                yield value
        state = getattr(state, "state2", None)
