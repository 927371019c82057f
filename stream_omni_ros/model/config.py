"""Stream-Omni architecture read from a checkpoint's config.json (and its weight map)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from stream_omni_ros.errors import CheckpointError

DEFAULT_BOTTOM_AUDIO_LAYERS = 3  # the original model class's default when config.json lacks it
DEFAULT_TOP_AUDIO_LAYERS = 5
REQUIRED_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers",
                   "num_attention_heads", "vocab_size")
STACK_PREFIXES = {"num_bottom_audio_layers": "model.bottom_audio_layers.",
                  "num_top_audio_layers": "model.top_audio_layers."}
# Tensors whose row count is the text vocabulary (doc/model.md §6.4: both layouts exist).
TEXT_VOCAB_KEYS = ("model.embed_tokens.weight", "lm_head.weight", "audio_to_text_proj.weight")
FULL_VOCAB_KEYS = ("model.audio_embed_tokens.weight", "audio_lm_head.weight",
                   "text_to_audio_proj.weight")
VISION_PREFIX = "model.vision_tower.vision_tower."
VERIFY_RAW_FIELDS = (
    "model_type", "architectures", "text_vocab_size", "audio_vocab_size", "vocab_size",
    "eos_token_id", "pad_token_id", "rope_scaling", "torch_dtype", "mm_vision_tower",
    "mm_projector_type", "mm_hidden_size", "image_aspect_ratio", "image_grid_pinpoints",
    "mm_patch_merge_type", "mm_use_im_start_end", "mm_use_im_patch_token",
    "tokenizer_model_max_length")


@dataclass(frozen=True)
class RopeScaling:
    """Llama-3.1 ("llama3") rotary frequency scaling parameters."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None) -> RopeScaling | None:
        """Parse config.json's `rope_scaling` (None or a non-llama3 type means plain RoPE)."""
        if raw is None:
            return None
        rope_type = raw.get("rope_type", raw.get("type"))
        if rope_type in (None, "default"):
            return None
        if rope_type != "llama3":
            raise CheckpointError(
                f"config.json rope_scaling.rope_type={rope_type!r} is not supported; "
                "expected 'llama3', 'default' or null")
        known = {k: raw[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                     "original_max_position_embeddings") if k in raw}
        return cls(**known)


@dataclass(frozen=True)
class StreamOmniConfig:
    """Architecture of one Stream-Omni checkpoint: Llama fields plus the speech stacks."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    text_vocab_size: int
    vocab_size: int
    num_bottom_audio_layers: int
    num_top_audio_layers: int
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: RopeScaling | None = None
    max_position_embeddings: int = 131072
    attention_bias: bool = False
    mlp_bias: bool = False
    audio_vocab_size: int | None = None
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    pad_token_id: int | None = None
    layer_count_sources: Mapping[str, str] = field(default_factory=dict)
    weight_facts: Mapping[str, object] = field(default_factory=dict)
    weight_keys: tuple[str, ...] = field(default=(), repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], weight_keys: Iterable[str] | None = None,
                  weight_shapes: Mapping[str, Sequence[int]] | None = None,
                  ) -> StreamOmniConfig:
        """Build from config.json's dict; weight keys/shapes (if known) fill and check it."""
        _check_supported(raw)
        if weight_keys is None and weight_shapes is not None:
            weight_keys = weight_shapes.keys()
        keys = None if weight_keys is None else list(weight_keys)
        heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        text_vocab, vocab = _vocab_sizes(raw, weight_shapes or {})
        counts, sources = {}, {}
        for name, prefix in STACK_PREFIXES.items():
            counts[name], sources[name] = _layer_count(raw, name, prefix, keys)
        eos = raw.get("eos_token_id")
        eos_ids = tuple(int(i) for i in (eos if isinstance(eos, (list, tuple)) else [eos])
                        if i is not None)
        defaults = cls.__dataclass_fields__
        return cls(
            hidden_size=hidden, intermediate_size=int(raw["intermediate_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]), num_attention_heads=heads,
            num_key_value_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads),
            text_vocab_size=text_vocab, vocab_size=vocab, **counts,
            rms_norm_eps=float(raw.get("rms_norm_eps", defaults["rms_norm_eps"].default)),
            rope_theta=float(raw.get("rope_theta", defaults["rope_theta"].default)),
            rope_scaling=RopeScaling.from_dict(raw.get("rope_scaling")),
            max_position_embeddings=int(raw.get(
                "max_position_embeddings", defaults["max_position_embeddings"].default)),
            attention_bias=bool(raw.get("attention_bias", False)),
            mlp_bias=bool(raw.get("mlp_bias", False)),
            audio_vocab_size=raw.get("audio_vocab_size"),
            bos_token_id=raw.get("bos_token_id"), eos_token_ids=eos_ids,
            pad_token_id=raw.get("pad_token_id"),
            layer_count_sources=MappingProxyType(sources),
            weight_facts=MappingProxyType(_weight_facts(keys)),
            weight_keys=tuple(keys or ()),
            raw=MappingProxyType(dict(raw)))

    @property
    def has_vision(self) -> bool:
        """Whether config.json names a vision tower (LLaVA-style multimodal checkpoint)."""
        return bool(self.raw.get("mm_vision_tower") or self.raw.get("vision_tower"))

    def verify_report(self) -> dict[str, object]:
        """Every [verify] item (doc/model.md §3.5) readable from config.json and weight map."""
        report: dict[str, object] = {
            f"config.{name}": self.raw.get(name, "<absent>") for name in VERIFY_RAW_FIELDS}
        for name, source in self.layer_count_sources.items():
            report[f"config.{name}"] = self.raw.get(name, "<absent>")
            report[f"resolved.{name}"] = f"{getattr(self, name)} (from {source})"
        report["resolved.text_vocab_size"] = self.text_vocab_size
        report["resolved.vocab_size"] = self.vocab_size
        report.update({f"weights.{k}": v for k, v in self.weight_facts.items()})
        return report


def _check_supported(raw: Mapping[str, Any]) -> None:
    """Required fields present; Llama variants this implementation does not cover refused."""
    missing = [name for name in REQUIRED_FIELDS if raw.get(name) is None]
    if missing:
        raise CheckpointError(f"config.json lacks required field(s) {missing}")
    if raw.get("pretraining_tp", 1) not in (1, None):
        raise CheckpointError(
            f"config.json pretraining_tp={raw['pretraining_tp']!r}; only 1 is supported")
    if raw.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"config.json hidden_act={raw['hidden_act']!r}; expected 'silu'")


def _vocab_sizes(raw: Mapping[str, Any],
                 shapes: Mapping[str, Sequence[int]]) -> tuple[int, int]:
    """Text and full vocabulary sizes; the tensors' row counts win over config.json."""
    text_vocab = int(raw.get("text_vocab_size") or raw["vocab_size"])
    vocab = int(raw["vocab_size"])
    rows_text = {int(shapes[k][0]) for k in TEXT_VOCAB_KEYS if k in shapes}
    rows_full = {int(shapes[k][0]) for k in FULL_VOCAB_KEYS if k in shapes}
    for rows, names in ((rows_text, TEXT_VOCAB_KEYS), (rows_full, FULL_VOCAB_KEYS)):
        if len(rows) > 1:
            found = {k: tuple(shapes[k]) for k in names if k in shapes}
            raise CheckpointError(f"vocabulary tensors disagree on their row count: {found}")
    if rows_text:
        text_vocab = rows_text.pop()
    if rows_full:
        vocab = rows_full.pop()
    if text_vocab > vocab:
        raise CheckpointError(
            f"text vocabulary ({text_vocab} rows) is larger than the full vocabulary ({vocab})")
    return text_vocab, vocab


def _layer_count(raw: Mapping[str, Any], name: str, prefix: str,
                 keys: list[str] | None) -> tuple[int, str]:
    """Depth of one speech stack: config.json, else the weight map, else the code default."""
    inferred = None
    if keys is not None:
        pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
        indices = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
        inferred = max(indices) + 1 if indices else 0
    if raw.get(name) is not None:
        value = int(raw[name])
        if inferred is not None and inferred != value:
            raise CheckpointError(
                f"config.json {name}={value} but the weight map holds {inferred} layers "
                f"under '{prefix}*'")
        return value, "config.json"
    if inferred:
        return inferred, "weight map"
    default = {"num_bottom_audio_layers": DEFAULT_BOTTOM_AUDIO_LAYERS,
               "num_top_audio_layers": DEFAULT_TOP_AUDIO_LAYERS}[name]
    return default, "code default"


def _weight_facts(keys: list[str] | None) -> dict[str, object]:
    """doc/model.md §3.5 item 3: what the weight map says about vision and extra heads."""
    if keys is None:
        return {}
    pattern = re.compile(re.escape(VISION_PREFIX) + r"vision_model\.encoder\.layers\.(\d+)\.")
    vision_layers = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return {
        "vision_tower_present": any(k.startswith(VISION_PREFIX) for k in keys),
        "last_vision_layer_index": max(vision_layers) if vision_layers else None,
        "image_newline_present": "model.image_newline" in keys,
        "top_audio_to_text_proj_present": "top_audio_to_text_proj.weight" in keys,
        "num_tensors": len(keys),
    }


def weights_report(weight_files: Mapping[str, str], shapes: Mapping[str, Sequence[int]],
                   unexpected: list[str]) -> dict[str, object]:
    """doc/model.md §3.5 item 3: shards, unexpected keys, vocabulary-matrix shapes."""
    matrices = TEXT_VOCAB_KEYS + FULL_VOCAB_KEYS
    return {"weights.shard_count": len(set(weight_files.values())),
            "weights.unexpected_keys": unexpected,
            **{f"weights.shape.{k}": shapes.get(k) for k in matrices}}


def tokenizer_report(tokenizer: Any, config: StreamOmniConfig) -> dict[str, object]:
    """doc/model.md §3.5 item 4: size, unit-token ids and contiguity, BOS, chat template."""
    units = config.audio_vocab_size or (config.vocab_size - config.text_vocab_size)
    first = tokenizer.convert_tokens_to_ids("<Audio_0>")
    last = tokenizer.convert_tokens_to_ids(f"<Audio_{units - 1}>") if units else None
    sample = [{"role": "user", "content": "Hi"}]
    rendered = (tokenizer.apply_chat_template(sample, tokenize=False, add_generation_prompt=True)
                if tokenizer.chat_template else "<no chat template>")
    return {"tokenizer.len": len(tokenizer), "tokenizer.audio_0_id": first,
            "tokenizer.last_audio_id": last,
            "tokenizer.units_contiguous": last is not None and first is not None
            and last - first == units - 1,
            "tokenizer.adds_bos": tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id],
            "tokenizer.chat_template_sample": rendered}
