"""Load a Stream-Omni checkpoint (local folder or hub id) with strict, shape-checked weights."""
from __future__ import annotations

import functools
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import safe_open
from transformers import PreTrainedTokenizerFast

from stream_omni_ros.errors import CheckpointError, ConfigError
from stream_omni_ros.model.config import (VISION_PREFIX, StreamOmniConfig, tokenizer_report,
                                          weights_report)
from stream_omni_ros.model.quantization import (QUANTIZATIONS, quantize_model,
                                                quantize_module, require_bitsandbytes)
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*"]
MAX_LISTED_KEYS = 20


@dataclass(frozen=True)
class LoadOptions:
    """Where and how to materialise the weights."""

    device: str = "cpu"
    dtype: str = "bf16"
    quantization: str = "none"
    vision_tower_path: str | None = None
    local_files_only: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"LoadOptions.dtype={self.dtype!r}; expected one of {list(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"LoadOptions.quantization={self.quantization!r}; expected one "
                              f"of {list(QUANTIZATIONS)}")
        try:
            torch.device(self.device)
        except RuntimeError as error:
            raise ConfigError(f"LoadOptions.device={self.device!r} is not a torch device: "
                              f"{error}") from error

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by `dtype`."""
        return DTYPES[self.dtype]


@dataclass(frozen=True)
class LoadedStreamOmni:
    """A ready model with its tokenizer, parsed config and first-load verification report."""

    model: StreamOmniForCausalLM
    tokenizer: PreTrainedTokenizerFast
    config: StreamOmniConfig
    report: Mapping[str, object]
    folder: Path


def load_stream_omni(path_or_hub_id: str, options: LoadOptions = LoadOptions(),
                     ) -> LoadedStreamOmni:
    """Load config, weights (strict keys, checked shapes) and tokenizer; log the [verify] items."""
    check_device_options(options)
    folder, weight_files, sources, shapes, config = read_checkpoint(path_or_hub_id, options)
    with torch.device("meta"):
        model = StreamOmniForCausalLM(config)
    unexpected = check_keys_and_shapes(model, shapes, folder)
    load_device = "cpu" if options.quantization != "none" else options.device
    # Quantized settings quantize each module as soon as its weight is read (CPU memory holds
    # the quantized model and one weight in the model dtype), then move the rest to the device.
    after_tensor = None if options.quantization == "none" else functools.partial(
        quantize_owner, model, options.quantization, options.device, options.torch_dtype)
    assign_weights(model, sources, torch.device(load_device), options.torch_dtype, after_tensor)
    quantize_model(model, options.quantization, options.device)
    model.eval().requires_grad_(False)
    tokenizer = load_tokenizer(folder, config)
    report = {**config.verify_report(), **weights_report(weight_files, shapes, unexpected),
              **tokenizer_report(tokenizer, config),
              "generation_config": read_json(folder / "generation_config.json", optional=True)}
    for name, value in report.items():
        logger.info("checkpoint %s: %s = %r", folder.name, name, value)
    return LoadedStreamOmni(model, tokenizer, config, report, folder)


def read_checkpoint(path_or_hub_id: str, options: LoadOptions) -> tuple[
        Path, dict[str, str], dict[str, tuple[Path, str]], dict[str, tuple[int, ...]],
        StreamOmniConfig]:
    """Folder, weight map, tensor sources, shapes (headers only) and the parsed config."""
    folder = resolve_checkpoint_folder(str(path_or_hub_id), options.local_files_only)
    raw = read_json(folder / "config.json")
    weight_files = read_weight_map(folder)
    sources = {key: (folder / name, key) for key, name in weight_files.items()}
    if options.vision_tower_path and not any(k.startswith(VISION_PREFIX) for k in sources):
        sources.update(external_vision_sources(Path(options.vision_tower_path)))
    shapes = read_shapes(sources)
    return folder, weight_files, sources, shapes, StreamOmniConfig.from_dict(
        raw, weight_shapes=shapes)


def resolve_checkpoint_folder(path_or_hub_id: str, local_files_only: bool) -> Path:
    """A local folder as is; a hub id through the Hugging Face cache (download if allowed)."""
    path = Path(path_or_hub_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"checkpoint path {path} is a file; expected a folder holding "
                              "config.json, safetensors weights and tokenizer files")
    if not HUB_ID.match(path_or_hub_id):
        raise CheckpointError(f"checkpoint folder {path} does not exist")
    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1", "true", "yes", "on")
    from huggingface_hub import snapshot_download  # only needed for hub ids
    try:
        return Path(snapshot_download(path_or_hub_id, allow_patterns=HUB_PATTERNS,
                                      local_files_only=offline))
    except Exception as error:  # the hub client raises many unrelated types here
        how = ("it is not in the local Hugging Face cache and downloads are off "
               "(HF_HUB_OFFLINE=1 or local_files_only)" if offline else "download failed")
        raise CheckpointError(
            f"checkpoint {path_or_hub_id!r} is neither a local folder nor available from the "
            f"hub: {how}; missing config.json, model*.safetensors and tokenizer files "
            f"({type(error).__name__}: {error})") from error


def read_json(path: Path, optional: bool = False) -> dict[str, Any] | None:
    """Parse a JSON file of the checkpoint; a missing required file is a CheckpointError."""
    if not path.is_file():
        if optional:
            return None
        raise CheckpointError(f"checkpoint file {path} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"checkpoint file {path} is not valid JSON: {error}") from error


def read_weight_map(folder: Path) -> dict[str, str]:
    """Key -> shard file name, from the index or a single model.safetensors."""
    index_path = folder / INDEX_FILE
    if index_path.is_file():
        weight_map = read_json(index_path).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{index_path} has no 'weight_map' object")
        missing = sorted({n for n in weight_map.values() if not (folder / n).is_file()})
        if missing:
            raise CheckpointError(f"{index_path} names shard file(s) that do not exist: "
                                  f"{missing}")
        return dict(weight_map)
    if (folder / SINGLE_FILE).is_file():
        with safe_open(str(folder / SINGLE_FILE), framework="pt") as handle:
            return {key: SINGLE_FILE for key in handle.keys()}
    raise CheckpointError(f"checkpoint folder {folder} has neither {INDEX_FILE} nor "
                          f"{SINGLE_FILE}")


def external_vision_sources(folder: Path) -> dict[str, tuple[Path, str]]:
    """SigLIP weights from a separate local folder (keys `vision_model.*`), mapped under model."""
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not files:
        raise CheckpointError(f"vision_tower_path {folder} holds no *.safetensors file")
    sources = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith("vision_model."):
                    sources[VISION_PREFIX + key] = (path, key)
    return sources


def read_shapes(sources: Mapping[str, tuple[Path, str]]) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from the safetensors headers (no data read)."""
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for key, (path, stored_key) in sources.items():
        by_file.setdefault(path, []).append((key, stored_key))
    shapes = {}
    for path, keys in by_file.items():
        with safe_open(str(path), framework="pt") as handle:
            stored = set(handle.keys())
            for key, stored_key in keys:
                if stored_key not in stored:
                    raise CheckpointError(f"{path.name} lacks tensor {stored_key!r} that the "
                                          "index assigns to it")
                shapes[key] = tuple(handle.get_slice(stored_key).get_shape())
    return shapes


def check_keys_and_shapes(model: torch.nn.Module, shapes: Mapping[str, tuple[int, ...]],
                          folder: Path) -> list[str]:
    """Missing keys and wrong shapes are errors; unexpected keys are returned (and logged)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()
                if not k.endswith("position_ids")}
    missing = sorted(set(expected) - set(shapes))
    if missing:
        hint = (" (no vision tower in the checkpoint: set vision_tower_path)"
                if any(k.startswith(VISION_PREFIX) for k in missing) else "")
        raise CheckpointError(f"checkpoint {folder} is missing {len(missing)} tensor(s){hint}: "
                              f"{missing[:MAX_LISTED_KEYS]}")
    wrong = {k: (shapes[k], want) for k, want in expected.items() if shapes[k] != want}
    if wrong:
        listed = ", ".join(f"{k}: file {got} != expected {want}"
                           for k, (got, want) in list(wrong.items())[:MAX_LISTED_KEYS])
        raise CheckpointError(f"checkpoint {folder} has tensors of the wrong shape: {listed}")
    unexpected = sorted(set(shapes) - set(expected))
    if unexpected:
        logger.warning("checkpoint %s: ignoring %d unexpected tensor(s): %s", folder,
                       len(unexpected), unexpected[:MAX_LISTED_KEYS])
    return unexpected


def assign_weights(model: torch.nn.Module, sources: Mapping[str, tuple[Path, str]],
                   device: torch.device, dtype: torch.dtype,
                   after_tensor: Callable[[str], None] | None = None) -> None:
    """Read each file once and assign its tensors in place of the meta parameters.

    after_tensor(key) runs after each assignment (the quantized settings quantize there).
    """
    expected = set(model.state_dict())
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for key, (path, stored_key) in sources.items():
        if key in expected:
            by_file.setdefault(path, []).append((key, stored_key))
    for path, keys in by_file.items():
        with safe_open(str(path), framework="pt", device=str(device)) as handle:
            for key, stored_key in keys:
                tensor = handle.get_tensor(stored_key)
                assign_tensor(model, key, tensor.to(dtype) if tensor.is_floating_point()
                              else tensor)
                del tensor  # the module holds it until it is quantized
                if after_tensor is not None:
                    after_tensor(key)
    materialize_buffers(model, device)


def quantize_owner(model: torch.nn.Module, quantization: str, device: str,
                   dtype: torch.dtype, key: str) -> None:
    """Quantize the module owning the tensor at key once all its tensors are loaded."""
    quantize_module(model, key.rpartition(".")[0], quantization, device, dtype)


def assign_tensor(model: torch.nn.Module, key: str, tensor: torch.Tensor) -> None:
    """Put one loaded tensor in place of its meta parameter or buffer, touching no other module.

    (load_state_dict would visit every module, quantized ones included, which bitsandbytes'
    lookup tables do not support.)
    """
    owner_name, _, leaf = key.rpartition(".")
    owner = model.get_submodule(owner_name)
    if leaf in dict(owner.named_parameters(recurse=False)):
        owner.register_parameter(leaf, torch.nn.Parameter(tensor, requires_grad=False))
    else:
        owner.register_buffer(leaf, tensor)


def materialize_buffers(model: torch.nn.Module, device: torch.device) -> None:
    """Rebuild the non-persistent buffers no weights file holds (SigLIP's position_ids).

    They may still be on the meta device or allocated but unset (`to_empty`); any other buffer
    left on meta was not loaded.
    """
    for module_name, module in model.named_modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if name != "position_ids":
                if buffer.is_meta:
                    raise CheckpointError(f"buffer {module_name}.{name} was not loaded")
                continue
            count = buffer.shape[-1]
            module.register_buffer(name, torch.arange(count, device=device).expand(1, -1),
                                   persistent=False)
    still_meta = [k for k, v in list(model.named_parameters()) + list(model.named_buffers())
                  if v.is_meta]
    if still_meta:
        raise CheckpointError(f"tensors left unloaded: {still_meta[:MAX_LISTED_KEYS]}")


def check_device_options(options: LoadOptions) -> None:
    """The device must exist here; 8bit/4bit need bitsandbytes (CPU or CUDA)."""
    if torch.device(options.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={options.device!r} but CUDA is not available on this machine")
    require_bitsandbytes(options.quantization)


def load_tokenizer(folder: Path, config: StreamOmniConfig) -> PreTrainedTokenizerFast:
    """The checkpoint's fast tokenizer (AutoTokenizer rejects model_type stream_omni_llama)."""
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"checkpoint file {folder / 'tokenizer.json'} is missing")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    if len(tokenizer) > config.vocab_size:
        raise CheckpointError(
            f"tokenizer in {folder} has {len(tokenizer)} ids but the speech embedding "
            f"model.audio_embed_tokens has only {config.vocab_size} rows")
    return tokenizer
