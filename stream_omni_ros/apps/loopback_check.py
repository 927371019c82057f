"""Environment proof: speech from espeak-ng goes wav_source_node -> DDS -> audio_sink_node.

Two separate node processes exchange AudioChunks over Fast DDS; the check compares the WAV the
sink wrote with the samples the source read, sample for sample.
"""
from __future__ import annotations

import json
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


def recorded_seconds(turns_log: Path) -> float:
    """Seconds of audio the sink has written so far, from its turns.jsonl."""
    lines = turns_log.read_text(encoding="utf-8").splitlines() if turns_log.exists() else []
    try:
        return sum(json.loads(line)["audio_s"] for line in lines)
    except ValueError:  # a line being written right now
        return 0.0


def run_audio_loopback(workdir: Path, text: str, timeout_s: float = 60.0) -> LoopbackResult:
    """Publish a spoken WAV from one node process and record it in another."""
    started = time.monotonic()
    source_wav = speak_to_wav(text, workdir / "question.wav")
    sent_s = soundfile.info(str(source_wav)).frames / 16000
    out_dir = workdir / "received"
    # A pause of 1 s closes the sink's file, so that what arrived can be seen on disk; a loaded
    # machine may split the stream into several files, which are compared joined.
    sink = start_node("audio_sink_node", {"output_dir": str(out_dir), "idle_timeout_s": 1.0},
                      {"audio/out": "audio/in"})
    try:
        source = start_node("wav_source_node", {"files": [str(source_wav)], "gap_s": 0.0,
                                                "chunk_s": 0.01})
        source.wait(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while recorded_seconds(out_dir / "turns.jsonl") < sent_s - 1e-6 \
                and sink.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sink.send_signal(signal.SIGINT)
        sink.wait(timeout=30)
    sent, _ = soundfile.read(source_wav, dtype="int16")
    files = sorted(out_dir.glob("*.wav"))
    received = (np.concatenate([soundfile.read(f, dtype="int16")[0] for f in files])
                if files else np.zeros(0, np.int16))
    identical = sent.shape == received.shape and bool(np.array_equal(sent, received))
    return LoopbackResult(len(sent), len(received), identical, time.monotonic() - started)
