"""Recorded questions (for machines without espeak-ng) replay what espeak-ng spoke."""
import shutil
import wave

import numpy as np
import pytest

from stream_omni_ros.bench.config import BenchConfig
from stream_omni_ros.bench.inputs import (QUESTIONS, main, pcm_to_wav_file, recorded_questions,
                                          spoken_questions, wav_file_to_pcm)
from stream_omni_ros.bench.parts import build_parts
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.speech_tokenizer import MODEL_SAMPLE_RATE

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng speaks the questions")


@needs_espeak
def test_recorded_questions_replay_the_spoken_ones(tmp_path):
    assert main([str(tmp_path), "--count", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["00.txt", "00.wav", "01.txt", "01.wav"]
    replayed = recorded_questions(tmp_path, turns=3)
    spoken = spoken_questions(2)
    assert [text for text, _ in replayed] == [QUESTIONS[0], QUESTIONS[1], QUESTIONS[0]]
    for (_, pcm), (_, original) in zip(replayed, spoken):
        assert pcm.dtype == np.float32 and len(pcm) == len(original)
        assert np.max(np.abs(pcm - original)) < 2 / 32768  # 16-bit rounding only


def test_pcm_round_trip_through_a_wav_file(tmp_path):
    pcm = np.sin(np.linspace(0, 100, MODEL_SAMPLE_RATE)).astype(np.float32) * 0.5
    pcm_to_wav_file(pcm, tmp_path / "00.wav")
    assert np.max(np.abs(wav_file_to_pcm(tmp_path / "00.wav") - pcm)) < 2 / 32768
    assert recorded_questions(tmp_path, 1)[0][0] == "00"  # no .txt: the file name stands in


def test_wrong_wav_layout_is_named(tmp_path):
    path = tmp_path / "00.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(2)
        handle.setsampwidth(2)
        handle.setframerate(44100)
        handle.writeframes(b"\0" * 400)
    with pytest.raises(ConfigError, match=r"\(2, 2, 44100\); expected \(1, 2, 16000\)"):
        wav_file_to_pcm(path)


def test_empty_question_folder_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no questions in"):
        recorded_questions(tmp_path, 1)


def test_full_size_on_cpu_needs_a_layer_cut(tmp_path):
    with pytest.raises(ConfigError, match="--layers N"):
        build_parts(BenchConfig(size="full", device="cpu"), tmp_path)
    with pytest.raises(ConfigError, match="layers = -2"):
        BenchConfig(layers=-2)
