"""Benchmark inputs made on the fly: spoken questions (espeak-ng) and synthetic camera frames."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

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
    import soundfile  # imported here: machines that replay recorded questions lack it
    import soxr

    if shutil.which("espeak-ng") is None:
        raise ConfigError("espeak-ng is not installed: the benchmark speaks its questions with "
                          "it (apt-get install espeak-ng)")
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    mono = soxr.resample(samples.mean(axis=1), rate, MODEL_SAMPLE_RATE).astype(np.float32)
    before = np.zeros(int(pad_before_s * MODEL_SAMPLE_RATE), np.float32)
    after = np.zeros(int(pad_after_s * MODEL_SAMPLE_RATE), np.float32)
    return np.concatenate([before, mono, after])


def spoken_questions(turns: int, pad_before_s: float = 0.3,
                     pad_after_s: float = 1.0) -> list[tuple[str, np.ndarray]]:
    """(text, 16 kHz speech) for each turn, cycling through QUESTIONS."""
    with tempfile.TemporaryDirectory(prefix="stream_omni_bench_") as folder:
        return [(QUESTIONS[n % len(QUESTIONS)],
                 speak_to_pcm(QUESTIONS[n % len(QUESTIONS)], Path(folder), pad_before_s,
                              pad_after_s, f"q{n}"))
                for n in range(turns)]


def pcm_to_wav_file(pcm: np.ndarray, path: Path) -> None:
    """Write 16 kHz mono float32 samples as a 16-bit PCM WAV file."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(MODEL_SAMPLE_RATE)
        handle.writeframes((np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes())


def wav_file_to_pcm(path: Path) -> np.ndarray:
    """16 kHz mono 16-bit WAV file -> float32 samples; a clear error for any other format."""
    with wave.open(str(path), "rb") as handle:
        layout = (handle.getnchannels(), handle.getsampwidth(), handle.getframerate())
        frames = handle.readframes(handle.getnframes())
    if layout != (1, 2, MODEL_SAMPLE_RATE):
        raise ConfigError(f"{path}: (channels, bytes per sample, rate) = {layout}; expected "
                          f"(1, 2, {MODEL_SAMPLE_RATE}), as write_questions makes them")
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0


def write_questions(folder: Path, count: int) -> list[Path]:
    """Speak `count` questions with espeak-ng into folder as NN.wav with their text in NN.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (text, pcm) in enumerate(spoken_questions(count)):
        paths.append(folder / f"{n:02d}.wav")
        pcm_to_wav_file(pcm, paths[-1])
        (folder / f"{n:02d}.txt").write_text(text + "\n", encoding="utf-8")
    return paths


def recorded_questions(folder: Path, turns: int) -> list[tuple[str, np.ndarray]]:
    """(text, 16 kHz speech) for each turn from write_questions' files, cycling through them."""
    wavs = sorted(folder.glob("*.wav"))
    if not wavs:
        raise ConfigError(f"no questions in {folder}: expected NN.wav files made by "
                          "`python -m stream_omni_ros.bench.inputs FOLDER`")
    recorded = []
    for wav in wavs:
        text_file = wav.with_suffix(".txt")
        text = text_file.read_text(encoding="utf-8").strip() if text_file.exists() else wav.stem
        recorded.append((text, wav_file_to_pcm(wav)))
    return [recorded[n % len(recorded)] for n in range(turns)]


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


def main(argv: list[str] | None = None) -> int:
    """Record the benchmark questions for a machine without espeak-ng."""
    parser = argparse.ArgumentParser(description=write_questions.__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=len(QUESTIONS))
    args = parser.parse_args(argv)
    try:
        paths = write_questions(args.folder, args.count)
    except ConfigError as error:
        print(f"stream_omni_ros.bench.inputs: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} questions into {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
