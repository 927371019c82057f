"""CPU cost of echo cancellation per second of audio, in a simulated room.

    python -m stream_omni_ros.bench.echo --seconds 60

Speech-like far-end audio (noise shaped by a syllable-rate envelope) plays into a simulated room;
the canceller gets the played audio as its reference, as omni_node gets audio/played. Prints the
CPU seconds spent per second of audio (process time, one thread) and the ERLE reached.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from stream_omni_ros.engine.audio_input import AudioFrontEnd, PcmChunk
from stream_omni_ros.engine.config import EchoConfig
from stream_omni_ros.engine.echo import EchoCanceller, EchoStats, float_to_pcm16
from stream_omni_ros.engine.simulated_room import SAMPLE_RATE, SimulatedRoom

STEP = SAMPLE_RATE // 100  # 10 ms microphone chunks, as audio_capture_node publishes
CONVERGE_S = 5.0  # ERLE is measured after this much audio


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Low-passed noise under a 4 Hz syllable envelope with pauses, at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    noise = np.convolve(rng.normal(0, 1, n), np.hanning(9), mode="same")
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.3)
    return (0.1 * noise * envelope).astype(np.float32)


def run(seconds: float) -> tuple[float, float | None]:
    """(CPU seconds per second of audio, ERLE dB after CONVERGE_S) over `seconds` of audio."""
    front_end, room = AudioFrontEnd(), SimulatedRoom()
    canceller = EchoCanceller(EchoConfig())
    room.speak(speech_like(seconds))
    cpu = 0.0
    for index in range(int(seconds * SAMPLE_RATE) // STEP):
        mic, played = room.step(STEP)
        stamp = 1000.0 + index * STEP / SAMPLE_RATE
        mic_chunk = PcmChunk(float_to_pcm16(mic), SAMPLE_RATE, stamp=stamp)
        played_chunk = PcmChunk(float_to_pcm16(played), SAMPLE_RATE, stamp=stamp)
        converted = front_end.convert(mic_chunk)
        if index * STEP == int(CONVERGE_S * SAMPLE_RATE):
            canceller.stats = EchoStats()
        started = time.process_time()
        canceller.add_played(played_chunk, stamp, front_end)
        canceller.process(converted.samples, converted.first_sample, stamp)
        cpu += time.process_time() - started
    return cpu / seconds, canceller.stats.erle_db()


def main(argv: list[str] | None = None) -> None:
    """Print the CPU cost per second of audio and the ERLE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio simulated [s]")
    args = parser.parse_args(argv)
    cost, erle = run(args.seconds)
    print(f"echo cancellation: {cost * 1000:.1f} ms CPU per second of audio "
          f"({cost:.2%} of one core); ERLE {erle:.1f} dB after {CONVERGE_S:.0f} s")


if __name__ == "__main__":
    main()
