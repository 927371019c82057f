"""Test-wide settings: never reach a model hub; keep DDS on loopback in a private domain.

The `speak` fixture synthesises speech with espeak-ng inside the test; speech is never stored.
"""
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(100, 199)))


def _speak(folder: Path, text: str, pad_before_s: float = 0.0, pad_after_s: float = 0.0,
           name: str = "speech") -> np.ndarray:
    """Synthesise text as 16 kHz mono float32, with silence padded by sox."""
    wav = folder / f"{name}.wav"
    tts = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True)
    subprocess.run(["sox", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", str(wav),
                    "pad", str(pad_before_s), str(pad_after_s)],
                   input=tts.stdout, check=True, capture_output=True)
    samples, rate = soundfile.read(wav, dtype="float32")
    assert rate == 16000
    return samples


@pytest.fixture
def speak(tmp_path: Path):
    """speak(text, pad_before_s=0, pad_after_s=0, name="speech") -> 16 kHz float32 speech."""
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        pytest.skip("espeak-ng and sox are needed to synthesise test speech")
    return lambda text, *args, **kwargs: _speak(tmp_path, text, *args, **kwargs)
