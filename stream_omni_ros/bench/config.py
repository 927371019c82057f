"""Settings of one benchmark run; every default is written here and only here."""
from __future__ import annotations

from dataclasses import dataclass

from stream_omni_ros.engine.runtime_config import CosyVoiceConfig
from stream_omni_ros.errors import ConfigError

SIZES = ("tiny", "full")
DEVICES = ("cpu", "cuda")
DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True)
class BenchConfig:
    """What to run: model size and device, turn count, fixed response lengths, output folder."""

    out_dir: str = "bench_out"
    size: str = "tiny"
    device: str = ""  # empty: cuda for full, cpu for tiny
    dtype: str = ""  # empty: bf16 for full, fp32 for tiny
    vocoder_dtype: str = ""  # empty: the runtime's cosyvoice.dtype default (fp32)
    turns: int = 5
    # Fixed response lengths (stop ids ignored) so that runs compare; 150 units = 6 s of speech.
    # The text stops earlier when the speech ends first: it advances on the CTC head's triggers.
    text_tokens: int = 40
    units: int = 150
    vocoder_steps: int = 10  # CFM Euler steps (production value)
    pace: float = 1.0  # microphone speed: 1 = real time, 0 = as fast as possible
    image_width: int = 640
    image_height: int = 480
    step_repeats: int = 10  # repeats of the per-step micro-benchmarks
    step_prompt_len: int = 512  # LLM positions before the timed decode steps
    message_repeats: int = 50  # repeats of the per-message cost micro-benchmarks
    layers: int = 0  # full size: layers kept per stack (0 = all; N > 0 rehearses on a CPU)
    frame_at: str = "speech_start"  # engine image.frame_at (utterance_end: the older way)
    questions_from: str = ""  # folder of NN.wav (+ NN.txt) questions; empty: espeak-ng now
    compile_decode: bool = True  # static-shape compiled decode steps (CUDA only)
    ros: bool = True  # run the ROS pass-through part where rclpy is installed
    seed: int = 0

    def __post_init__(self) -> None:
        checks = (("size", self.size in SIZES, f"one of {SIZES}"),
                  ("device", self.device in DEVICES + ("",), f"one of {DEVICES} or empty"),
                  ("dtype", self.dtype in DTYPES + ("",), f"one of {DTYPES} or empty"),
                  ("vocoder_dtype", self.vocoder_dtype in DTYPES + ("",),
                   f"one of {DTYPES} or empty"),
                  ("turns", self.turns >= 1, ">= 1"),
                  ("text_tokens", self.text_tokens >= 1, ">= 1"),
                  ("units", self.units >= 1, ">= 1"),
                  ("vocoder_steps", self.vocoder_steps >= 1, ">= 1"),
                  ("pace", self.pace >= 0, ">= 0"),
                  ("image_width", self.image_width >= 16, ">= 16"),
                  ("image_height", self.image_height >= 16, ">= 16"),
                  ("step_repeats", self.step_repeats >= 2, ">= 2"),
                  ("step_prompt_len", self.step_prompt_len >= 1, ">= 1"),
                  ("message_repeats", self.message_repeats >= 2, ">= 2"),
                  ("layers", self.layers >= 0, ">= 0 (0 = every layer)"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"bench {name} = {getattr(self, name)!r} is invalid; "
                                  f"expected {expected}")

    @property
    def model_device(self) -> str:
        """The device actually used."""
        return self.device or ("cuda" if self.size == "full" else "cpu")

    @property
    def flow_dtype(self) -> str:
        """The vocoder precision actually used: as deployed unless set."""
        return self.vocoder_dtype or CosyVoiceConfig().dtype

    @property
    def model_dtype(self) -> str:
        """The model precision actually used."""
        return self.dtype or ("bf16" if self.size == "full" else "fp32")
