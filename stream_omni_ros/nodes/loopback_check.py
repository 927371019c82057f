"""Environment proof: speech from espeak-ng goes wav_source_node -> DDS -> audio_sink_node.

Two separate node processes exchange AudioChunks over Fast DDS; the check compares the WAV the
sink wrote with the samples the source read, sample for sample.
"""
from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from stream_omni_ros.nodes.executables import start_node


@dataclass(frozen=True)
class LoopbackResult:
    """What was sent, what came back, and whether they are identical."""

    sent_samples: int
    received_samples: int
    identical: bool
    wall_s: float


def speak_to_wav(text: str, path: Path, sample_rate: int = 16000) -> Path:
    """Synthesise `text` with espeak-ng into a mono 16-bit WAV at `sample_rate`."""
    espeak = subprocess.run(["espeak-ng", "--stdout", text], check=True, capture_output=True)
    subprocess.run(["sox", "-t", "wav", "-", "-r", str(sample_rate), "-c", "1", "-b", "16",
                    str(path)], input=espeak.stdout, check=True, capture_output=True)
    return path


def run_audio_loopback(workdir: Path, text: str, timeout_s: float = 60.0) -> LoopbackResult:
    """Publish a spoken WAV from one node process and record it in another."""
    started = time.monotonic()
    source_wav = speak_to_wav(text, workdir / "question.wav")
    out_dir = workdir / "received"
    sink = start_node("audio_sink_node", {"output_dir": str(out_dir), "idle_timeout_s": 30.0},
                      {"audio/out": "audio/in"})
    try:
        source = start_node("wav_source_node", {"files": [str(source_wav)], "gap_s": 0.0,
                                                "chunk_s": 0.01})
        source.wait(timeout=timeout_s)
        time.sleep(0.5)  # let the last reliable chunks arrive before the sink flushes
    finally:
        sink.send_signal(signal.SIGINT)
        sink.wait(timeout=30)
    sent, _ = soundfile.read(source_wav, dtype="int16")
    files = sorted(out_dir.glob("*.wav"))
    received = (np.concatenate([soundfile.read(f, dtype="int16")[0] for f in files])
                if files else np.zeros(0, np.int16))
    identical = sent.shape == received.shape and bool(np.array_equal(sent, received))
    return LoopbackResult(len(sent), len(received), identical, time.monotonic() - started)
