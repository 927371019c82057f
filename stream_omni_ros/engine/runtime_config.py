"""Model-loading settings of a running assistant, and the loader that builds its Responder.

The architecture comes from the checkpoint folders; these settings only say where the folders are
and how to run them. Fields are plain scalars so the ROS layer exposes them as parameters
(`responder`, `device`, `dtype`, `quantization`, `model.path`, `cosyvoice.path`, `speech.*`,
`generation.*`). `responder` picks what answers: the checkpoint, or a model-free stand-in.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from stream_omni_ros.config_fields import described, described_factory
from stream_omni_ros.engine.config import ConversationConfig
from stream_omni_ros.engine.echo_responder import EchoResponder
from stream_omni_ros.engine.model_responder import StreamOmniResponder
from stream_omni_ros.engine.passthrough_responder import PassThroughResponder
from stream_omni_ros.engine.responder import Responder
from stream_omni_ros.errors import CheckpointError, ConfigError
from stream_omni_ros.model import memory
from stream_omni_ros.model.checkpoint import (DTYPES, QUANTIZATIONS, LoadOptions,
                                              load_stream_omni, read_checkpoint)
from stream_omni_ros.model.compiled import CompiledDecodeConfig
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.request import GenerationConfig
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer, providers_for_device
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions

logger = logging.getLogger(__name__)

SPEECH_TOKENIZER_FILE = "speech_tokenizer_v1.onnx"
# The vocoder names its float types in full; the model loader uses the short names.
VOCODER_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
_GEN = GenerationConfig  # defaults below are read from the model's own dataclass
# model: the checkpoint; echo: EchoResponder (no model, for simulation and CI runs of the graph);
# passthrough: fixed-length answers of generation.max_new_tokens / max_new_units, for benchmarks;
# parrot: EchoResponder speaking the heard speech back (a voice: echo-cancellation tests).
RESPONDERS = ("model", "echo", "passthrough", "parrot")
MODEL_FREE_RESPONDERS = ("echo", "passthrough", "parrot")  # stand-ins that load no weights


@dataclass(frozen=True)
class ModelConfig:
    """Where the Stream-Omni checkpoint is (local folder or hub id) and its context size."""

    path: str = described(
        "", "Stream-Omni checkpoint folder (config.json, safetensors, tokenizer) or hub id")
    vision_tower_path: str = described(
        "", "SigLIP folder, only for checkpoints whose vision weights live apart; empty: none")
    max_input_len: int = described(
        2048, "cache positions for one turn's input, after prompt and history", units="tokens")
    # Compiled static-shape decode steps (CUDA graphs on CUDA); off until measured on the robot.
    compile_decode: bool = described(
        False, "run decode steps compiled with static shapes (CUDA graphs on CUDA)")

    def __post_init__(self) -> None:
        if self.max_input_len < 16:
            raise ConfigError(f"model.max_input_len = {self.max_input_len}; expected >= 16")


@dataclass(frozen=True)
class CosyVoiceConfig:
    """The CosyVoice-300M-25Hz folder (speech tokenizer in, flow + HiFT out)."""

    path: str = described(
        "", "CosyVoice-300M-25Hz folder (speech_tokenizer_v1.onnx, flow, hift, spk2info.pt)")
    n_timesteps: int = described(
        10, "flow-matching Euler steps per speech chunk (fewer: faster, rougher)")
    # The original runs flow and HiFT in fp32; lower precision only after a listening check.
    dtype: str = described("fp32", "float type of flow and HiFT vocoder: bf16, fp16 or fp32")

    def __post_init__(self) -> None:
        if self.dtype not in VOCODER_DTYPES:
            raise ConfigError(f"cosyvoice.dtype = {self.dtype!r}; expected one of "
                              f"{list(VOCODER_DTYPES)}")


@dataclass(frozen=True)
class SpeechConfig:
    """Spoken output: load the vocoder at all, and which speaker of spk2info.pt to use."""

    enabled: bool = described(True, "load the vocoder; false: text answers only, less memory")
    speaker: str = described("英文女", "speaker in CosyVoice spk2info.pt whose voice is used")


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings exposed to users (the rest of GenerationConfig keeps its defaults)."""

    max_new_tokens: int = described(
        _GEN.max_new_tokens, "longest text answer per turn, spoken or not (the original's "
        "max_new_tokens in text-out turns)", units="text tokens")
    max_new_units: int = described(
        _GEN.max_new_units, "longest spoken answer per turn, 25 units a second (the original's "
        "max_new_tokens in speech-out turns)", units="speech units")
    temperature: float = described(
        _GEN.temperature, "text sampling temperature, text-out turns only; 0: greedy")
    top_p: float = described(_GEN.top_p, "nucleus (top-p) mass for text sampling, in (0, 1]")
    unit_temperature: float = described(
        _GEN.unit_temperature, "speech unit sampling temperature; 0: greedy")
    unit_top_p: float = described(
        _GEN.unit_top_p, "nucleus (top-p) mass for speech unit sampling, in (0, 1]")
    seed: int = described(_GEN.seed, "random seed of sampling, reset every turn")
    mask_units: bool = described(
        _GEN.mask_units, "restrict the unit head to speech units and stop ids")
    ignore_stop_ids: bool = described(
        _GEN.ignore_stop_ids, "never stop at end ids: fixed answer lengths, for benchmarks")
    duplicate_bos: bool = described(
        _GEN.duplicate_bos, "start prompts with two BOS tokens as the original does; false: one")

    def to_generation_config(self) -> GenerationConfig:
        """The model's GenerationConfig with these values (validated there)."""
        return GenerationConfig(**dataclasses.asdict(self))


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything needed to load the model side of the assistant."""

    responder: str = described(
        "model", "what answers: model (the checkpoint), echo, parrot or passthrough (no model, "
        "no GPU)")
    device: str = described("cpu", "torch device of model and vocoder, e.g. cpu, cuda, cuda:1")
    dtype: str = described("bf16", "float type of the Stream-Omni weights: bf16, fp16 or fp32")
    quantization: str = described(
        "none", "bitsandbytes weights of the stacks and vocabulary matrices: none, 8bit "
        "(LLM.int8) or 4bit (NF4); CPU or CUDA")
    model: ModelConfig = described_factory(ModelConfig, "Stream-Omni checkpoint")
    cosyvoice: CosyVoiceConfig = described_factory(CosyVoiceConfig, "CosyVoice vocoder")
    speech: SpeechConfig = described_factory(SpeechConfig, "spoken output")
    generation: GenerationSettings = described_factory(GenerationSettings, "decoding")

    def __post_init__(self) -> None:
        if self.responder not in RESPONDERS:
            raise ConfigError(f"parameter responder = {self.responder!r}; expected one of "
                              f"{list(RESPONDERS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype = {self.dtype!r}; expected one of {list(DTYPES)}")
        if self.quantization not in QUANTIZATIONS:
            raise ConfigError(f"quantization = {self.quantization!r}; expected one of "
                              f"{list(QUANTIZATIONS)}")
        check_compiled_quantization(self.quantization, self.model.compile_decode, self.device)


def check_compiled_quantization(quantization: str, compile_decode: bool, device: str) -> None:
    """Compiled decode steps take 8-bit weights on the CPU only (tested there); else refused."""
    if quantization == "none" or not compile_decode:
        return
    if device.startswith("cuda"):
        # LLM.int8 splits outlier columns per input and NF4 picks kernels per shape: neither
        # is a fixed graph that a CUDA graph can replay.
        why = "compiled decode steps replay CUDA graphs, which the quantized layers' " \
              "input-dependent kernels do not support"
    elif quantization == "4bit":
        why = "the NF4 lookup tables copy their quantization state on every call, which " \
              "cannot be compiled into one graph"
    else:
        return
    raise ConfigError(f"quantization = {quantization!r} with model.compile_decode = true on "
                      f"{device!r}; expected one of them off ({why})")


def _require_folder(value: str, name: str, holds: str) -> Path:
    if not value:
        raise ConfigError(f"parameter {name} is empty; expected the folder holding {holds}")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise CheckpointError(f"{name} = {value!r} is not a folder; expected one holding {holds}")
    return folder


def load_responder(config: RuntimeConfig) -> Responder:
    """The Responder that config.responder names: the loaded model or a model-free stand-in."""
    if config.responder in ("echo", "parrot"):
        return EchoResponder(replay_heard=config.responder == "parrot")
    if config.responder == "passthrough":
        limits = config.generation.to_generation_config()  # validates the two lengths
        return PassThroughResponder(limits.max_new_tokens, limits.max_new_units)
    return load_model_responder(config)


def available_device(device: str) -> str:
    """`device`, or cpu with one warning when it names CUDA and torch sees no GPU."""
    import torch

    if not device.startswith("cuda") or torch.cuda.is_available():
        return device
    build = f"torch {torch.__version__}, " + (
        f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build")
    logger.warning("device %s: no CUDA GPU is usable (%s); running on cpu, which is far slower. "
                   "Install a CUDA build of torch (scripts/setup.sh: TORCH_SPEC) and the GPU "
                   "driver, or set device to cpu to silence this", device, build)
    return "cpu"


def runtime_on_usable_device(config: RuntimeConfig) -> RuntimeConfig:
    """`config` with the device its responder will run on; model-free responders keep theirs."""
    if config.responder in MODEL_FREE_RESPONDERS:
        return config
    return dataclasses.replace(config, device=available_device(config.device))


def device_memory_mb(device: str) -> float | None:
    """Memory allocated by torch on a CUDA device in MiB; None for other devices."""
    if not device.startswith("cuda"):
        return None
    import torch
    return torch.cuda.memory_allocated(torch.device(device)) / 2**20


def required_memory(config: RuntimeConfig, model_config: StreamOmniConfig) -> int:
    """Device bytes this configuration needs for the checkpoint's shapes (model/memory.py)."""
    model = memory.meta_model(model_config)
    generation = config.generation
    context = memory.turn_context(
        model, config.model.max_input_len, generation.max_new_tokens, generation.max_new_units,
        ConversationConfig().max_history_tokens, config.cosyvoice.dtype, config.speech.enabled)
    setting = memory.Setting(config.dtype, config.quantization)
    return memory.estimate(model_config, context, setting, model)[-1].bytes


def check_memory(config: RuntimeConfig, options: LoadOptions, free: int) -> None:
    """Refuse, before loading, a setting that needs more than `free` device bytes."""
    model_config = read_checkpoint(config.model.path, options)[-1]
    required = required_memory(config, model_config)
    logger.info("memory on %s: about %.1f GiB needed, %.1f GiB free", config.device,
                required / memory.GIB, free / memory.GIB)
    memory.check_fits(required, free, config.device,
                      memory.Setting(config.dtype, config.quantization))


def load_model_responder(config: RuntimeConfig) -> StreamOmniResponder:
    """Load checkpoint, speech tokenizer and (if speech is enabled) the vocoder."""
    config = runtime_on_usable_device(config)
    if not config.model.path:
        raise ConfigError("parameter model.path is empty; expected a Stream-Omni checkpoint "
                          "folder (config.json, model*.safetensors, tokenizer files)")
    cosyvoice = _require_folder(config.cosyvoice.path, "cosyvoice.path",
                                f"{SPEECH_TOKENIZER_FILE} and the CosyVoice files")
    options = LoadOptions(device=config.device, dtype=config.dtype,
                          quantization=config.quantization,
                          vision_tower_path=config.model.vision_tower_path or None)
    free = memory.free_device_bytes(config.device)
    if free is not None:
        check_memory(config, options, free)
    logger.info("loading Stream-Omni from %s on %s (%s, quantization %s)", config.model.path,
                config.device, config.dtype, config.quantization)
    loaded = load_stream_omni(config.model.path, options)
    compiled = CompiledDecodeConfig() if config.model.compile_decode else None
    generator = StreamOmniGenerator(loaded, max_input_len=config.model.max_input_len,
                                    compiled=compiled)
    logger.info("loading speech tokenizer %s", cosyvoice / SPEECH_TOKENIZER_FILE)
    tokenizer = SpeechTokenizer(cosyvoice / SPEECH_TOKENIZER_FILE,
                                providers_for_device(config.device))
    vocoder = None
    if config.speech.enabled:
        logger.info("loading CosyVoice vocoder from %s", cosyvoice)
        vocoder = CosyVoiceVocoder.load(cosyvoice, VocoderOptions(
            device=config.device, dtype=VOCODER_DTYPES[config.cosyvoice.dtype],
            n_timesteps=config.cosyvoice.n_timesteps, speaker=config.speech.speaker))
    return StreamOmniResponder(generator, tokenizer, vocoder,
                               config.generation.to_generation_config())
