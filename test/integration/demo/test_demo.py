"""`stream-omni-ros demo` end to end in a subprocess, with the tiny random model."""
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import soundfile

REPO = Path(__file__).resolve().parents[3]


def run_cli(args: list[str], cache: Path, timeout_s: float) -> subprocess.CompletedProcess:
    """Run `python -m stream_omni_ros.cli ...` from the repository root with a private cache."""
    env = {**os.environ, "STREAM_OMNI_CACHE": str(cache)}
    return subprocess.run([sys.executable, "-m", "stream_omni_ros.cli", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout_s)


def test_tiny_demo_answers_and_verifies_its_outputs(tmp_path, demo_assets):
    out = tmp_path / "out"
    result = run_cli(["demo", "--out", str(out), "--device", "cpu"], demo_assets.root.parent,
                     150)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TINY RANDOM WEIGHTS" in result.stdout and "MEANINGLESS" in result.stdout
    assert f"{demo_assets.root} (reused)" in result.stdout
    assert "heard (final" in result.stdout and "response delta" in result.stdout
    response = re.search(r"response final .*\): '(.*)'$", result.stdout, re.MULTILINE)
    assert response is not None, result.stdout
    words = response.group(1).split()  # readable words of the real tokenizer, no byte soup
    assert len(words) >= 10 and all(word.isalpha() for word in words), response.group(1)
    lines = result.stdout.splitlines()
    first_audio = next(i for i, line in enumerate(lines) if "first audio chunk" in line)
    assert sum("response delta" in line for line in lines[:first_audio]) >= 3  # text leads
    assert result.stdout.count("[PASS]") == 4 and "[FAIL]" not in result.stdout
    assert "DEMO OK" in result.stdout
    answers = sorted(out.glob("turn_*.wav"))
    assert len(answers) == 1
    info = soundfile.info(str(answers[0]))
    assert info.samplerate == 22050 and info.duration > 3.0  # seconds of speech
    question = soundfile.info(str(out / "question.wav"))
    assert question.samplerate == 16000 and question.duration > 1.0
    scene = cv2.imread(str(out / "scene.png"))  # BGR
    red = (scene[..., 2] > 180) & (scene[..., 1] < 80) & (scene[..., 0] < 80)
    assert red.mean() > 0.01  # the red cup is in the picture


def test_demo_fails_loudly_when_the_model_cannot_load(tmp_path):
    missing = tmp_path / "no_such_checkpoint"
    result = run_cli(["demo", "--out", str(tmp_path / "out"), "--device", "cpu",
                      "--model-path", str(missing), "--cosyvoice-path", str(missing),
                      "--load-timeout", "60"], tmp_path / "cache", 90)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DEMO OK" not in result.stdout and "TINY RANDOM" not in result.stdout
    assert "[FAIL] omni_node could not load the model" in result.stdout
    assert str(missing) in result.stdout  # the message names the folder at fault
    assert "DEMO FAILED" in result.stderr


def test_demo_rejects_half_a_real_model(tmp_path):
    result = run_cli(["demo", "--out", str(tmp_path), "--model-path", str(tmp_path)],
                     tmp_path / "cache", 30)
    assert result.returncode == 2
    assert "--cosyvoice-path" in result.stderr
