"""The model, speech tokenizer and vocoder a benchmark runs: tiny checkpoints or full-size random.

Tiny parts are written in their real on-disk formats and loaded by the real loaders. Full-size
parts have the real shapes with random weights created directly on the device (random weights
cost the same time as trained ones; `layers` cuts the stacks for a CPU rehearsal). The real
speech tokenizer cannot be downloaded here, so the full run uses the tiny ONNX tokenizer and its
front-end cost is a lower bound.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.engine.runtime_config import VOCODER_DTYPES
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, load_stream_omni
from stream_omni_ros.model.compiled import CompiledDecodeConfig
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.random_weights import build_full
from stream_omni_ros.model.speech_tokenizer import SpeechTokenizer, providers_for_device
from stream_omni_ros.model.readable_checkpoint import write_readable_checkpoint
from stream_omni_ros.model.tiny_speech_tokenizer import write_tiny_speech_tokenizer
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.flow import Flow, FlowConfig
from stream_omni_ros.vocoder.hift import HiftConfig, HiFTGenerator
from stream_omni_ros.vocoder.tiny_cosyvoice import TINY_SPEAKER, write_tiny_cosyvoice



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
    """Tiny parts written under folder and loaded back, or full-size random parts."""
    device = config.model_device
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"bench device 'cuda' (size {config.size!r}) needs CUDA, but "
                          "torch.cuda.is_available() is False on this machine")
    if config.size == "full" and device != "cuda" and not config.layers:
        raise ConfigError("bench --size full on the CPU needs --layers N (N layers per stack): "
                          "the whole 8B model with random weights is built on a GPU only")
    vocoder_options = VocoderOptions(device=device, n_timesteps=config.vocoder_steps,
                                     dtype=VOCODER_DTYPES[config.flow_dtype])
    tokenizer = SpeechTokenizer(write_tiny_speech_tokenizer(folder / "cosyvoice"),
                                providers_for_device(device))
    if config.size == "tiny":
        # The real Llama-3 tokenizer, so that text streams as it would (no held-back bytes).
        checkpoint = write_readable_checkpoint(folder / "stream_omni", seed=config.seed)
        loaded = load_stream_omni(str(checkpoint), LoadOptions(
            device=device, dtype=config.model_dtype, local_files_only=True))
        vocoder = CosyVoiceVocoder.load(
            write_tiny_cosyvoice(folder / "cosyvoice", seed=config.seed), vocoder_options)
    else:
        loaded = build_full(device, config.model_dtype, config.seed, vision=True,
                            layers=config.layers)
        vocoder = build_full_vocoder(vocoder_options)
    # CUDA runs as deployed: static-shape decode steps replayed as CUDA graphs.
    compiled = CompiledDecodeConfig() if device == "cuda" and config.compile_decode else None
    return BenchParts(loaded, StreamOmniGenerator(loaded, compiled=compiled), tokenizer,
                      vocoder, device_name(device))


def build_full_vocoder(options: VocoderOptions) -> CosyVoiceVocoder:
    """CosyVoice-300M-25Hz flow + HiFT shapes, initialised directly on the vocoder's device."""
    with torch.device(options.device):
        flow, hift = Flow(FlowConfig()), HiFTGenerator(HiftConfig())
        speaker = torch.randn(1, 192)
    hift.fold_weight_norm()
    flow.to(dtype=getattr(torch, options.dtype)).eval()  # HiFT stays float32 as in CosyVoice
    hift.eval()
    return CosyVoiceVocoder(flow, hift, {TINY_SPEAKER: speaker}, options)

