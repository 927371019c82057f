"""The model, speech tokenizer and vocoder a benchmark runs: tiny checkpoints or full-size random.

Tiny parts are written in their real on-disk formats and loaded by the real loaders. Full-size
parts have the real shapes with random weights created directly on the GPU (random weights cost
the same time as trained ones); the real speech tokenizer cannot be downloaded here, so the full
run uses the tiny ONNX tokenizer and its front-end cost is a lower bound.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.bench import llama3_tokenizer
from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, load_stream_omni
from stream_omni_ros.model.config import StreamOmniConfig
from stream_omni_ros.model.compiled import CompiledDecodeConfig
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer, providers_for_device
from stream_omni_ros.model.stream_omni import StreamOmniForCausalLM
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.flow import Flow, FlowConfig
from stream_omni_ros.vocoder.hift import HiftConfig, HiFTGenerator
from stream_omni_ros.vocoder.tiny_cosyvoice import TINY_SPEAKER, write_tiny_cosyvoice

# SigLIP-so400m-patch14-384 without its last layer, LLaVA-OneVision anyres merging (spec 4).
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
VOCODER_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


@dataclass(frozen=True)
class BenchParts:
    """Everything a turn needs, on one device."""

    loaded: LoadedStreamOmni
    generator: StreamOmniGenerator
    speech_tokenizer: SpeechTokenizer
    vocoder: CosyVoiceVocoder
    device_name: str


def device_name(device: str) -> str:
    """Human name of the device the run uses (GPU model or 'cpu')."""
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def build_parts(config: BenchConfig, folder: Path) -> BenchParts:
    """Tiny parts written under folder and loaded back, or full-size random parts on CUDA."""
    device = config.model_device
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"bench device 'cuda' (size {config.size!r}) needs CUDA, but "
                          "torch.cuda.is_available() is False on this machine")
    if config.size == "full" and device != "cuda":
        raise ConfigError("bench --size full needs --device cuda: the 8B model with random "
                          "weights is built on the GPU only (CPU is for --size tiny)")
    vocoder_options = VocoderOptions(device=device, n_timesteps=config.vocoder_steps,
                                     dtype=VOCODER_DTYPES[config.model_dtype])
    tokenizer = SpeechTokenizer(write_tiny_speech_tokenizer(folder / "cosyvoice"),
                                providers_for_device(device))
    if config.size == "tiny":
        checkpoint = write_tiny_checkpoint(folder / "stream_omni", variant="anyres",
                                           seed=config.seed)
        loaded = load_stream_omni(str(checkpoint), LoadOptions(
            device=device, dtype=config.model_dtype, local_files_only=True))
        vocoder = CosyVoiceVocoder.load(
            write_tiny_cosyvoice(folder / "cosyvoice", seed=config.seed), vocoder_options)
    else:
        loaded = build_full_model(config.model_dtype, config.seed)
        vocoder = build_full_vocoder(vocoder_options)
    # CUDA runs as deployed: static-shape decode steps replayed as CUDA graphs.
    compiled = CompiledDecodeConfig() if device == "cuda" and config.compile_decode else None
    return BenchParts(loaded, StreamOmniGenerator(loaded, compiled=compiled), tokenizer,
                      vocoder, device_name(device))


def build_full_model(dtype: str, seed: int, device: str = "cuda") -> LoadedStreamOmni:
    """Stream-Omni-8B shapes (with the SigLIP tower) with random weights made on the device."""
    from stream_omni_ros.model.bench import FULL_CONFIG

    raw = {**copy.deepcopy(FULL_CONFIG), **copy.deepcopy(FULL_VISION)}
    config = StreamOmniConfig.from_dict(raw)
    model = random_model_on_device(config, device, LoadOptions(dtype=dtype).torch_dtype, seed)
    return LoadedStreamOmni(model, llama3_tokenizer(config.raw["audio_vocab_size"]), config,
                            {}, Path("."))


@torch.no_grad()
def random_model_on_device(config: StreamOmniConfig, device: str, dtype: torch.dtype,
                           seed: int) -> StreamOmniForCausalLM:
    """Build on meta, allocate once on the device in dtype, fill with cheap random values."""
    with torch.device("meta"):
        model = StreamOmniForCausalLM(config)
    model = model.to(dtype).to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    for param in model.parameters():
        if param.ndim == 1:
            param.fill_(1.0)  # norm scales and biases: keep activations bounded
        else:
            param.normal_(0.0, 0.02, generator=generator)
    for module in model.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if name == "position_ids":  # the only non-persistent buffer (SigLIP)
                count = buffer.shape[-1]
                module.register_buffer(name, torch.arange(count, device=device).expand(1, -1),
                                       persistent=False)
    return model.eval().requires_grad_(False)


def build_full_vocoder(options: VocoderOptions) -> CosyVoiceVocoder:
    """CosyVoice-300M-25Hz flow + HiFT shapes, initialised directly on the vocoder's device."""
    with torch.device(options.device):
        flow, hift = Flow(FlowConfig()), HiFTGenerator(HiftConfig())
        speaker = torch.randn(1, 192)
    hift.fold_weight_norm()
    flow.to(dtype=getattr(torch, options.dtype)).eval()  # HiFT stays float32 as in CosyVoice
    hift.eval()
    return CosyVoiceVocoder(flow, hift, {TINY_SPEAKER: speaker}, options)

