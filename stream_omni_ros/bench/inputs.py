"""Benchmark inputs made on the fly: spoken questions (espeak-ng) and synthetic camera frames."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

from stream_omni_ros.errors import ConfigError

SAMPLE_RATE = 16000
QUESTIONS = (
    "What is on the table in front of you?",
    "Can you describe the colors of the boxes?",
    "How many cups do you see?",
    "Where should I put the red ball?",
    "Is the door behind you open?",
    "What is the person holding?",
)


def speak_to_pcm(text: str, folder: Path, pad_before_s: float, pad_after_s: float,
                 name: str = "question") -> np.ndarray:
    """espeak-ng speech of text as 16 kHz mono float32, padded with silence."""
    if shutil.which("espeak-ng") is None:
        raise ConfigError("espeak-ng is not installed: the benchmark speaks its questions with "
                          "it (apt-get install espeak-ng)")
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1), rate, SAMPLE_RATE).astype(np.float32)
    before = np.zeros(int(pad_before_s * SAMPLE_RATE), np.float32)
    after = np.zeros(int(pad_after_s * SAMPLE_RATE), np.float32)
    return np.concatenate([before, mono, after])


def spoken_questions(turns: int, pad_before_s: float = 0.3,
                     pad_after_s: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """(text, 16 kHz speech) for each turn, cycling through QUESTIONS."""
    with tempfile.TemporaryDirectory(prefix="stream_omni_bench_") as folder:
        return [(QUESTIONS[n % len(QUESTIONS)],
                 speak_to_pcm(QUESTIONS[n % len(QUESTIONS)], Path(folder), pad_before_s,
                              pad_after_s, f"q{n}"))
                for n in range(turns)]


def camera_frame(width: int, height: int, seed: int) -> np.ndarray:
    """A synthetic RGB frame [height, width, 3] uint8: a gradient with a few coloured boxes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                    np.full_like(x, 96)], axis=-1).astype(np.uint8)
    for _ in range(4):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        rgb[top:top + height // 4, left:left + width // 4] = rng.integers(0, 256, 3)
    return rgb
