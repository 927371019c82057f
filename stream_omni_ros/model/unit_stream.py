"""Speech units of a growing utterance, tokenized window by window (doc/model.md §5.1, §5.6).

The speech tokenizer's encoder is bidirectional: the units of a stretch of audio depend on all
the audio of the same call. Re-tokenizing the whole utterance for every partial transcript costs
time that grows with the utterance, and the final transcript then waits for one more whole pass
after the endpoint. Here units are fixed window by window on a grid that depends on the audio
only: window k tokenizes units [kH - C, kH + H + R) and keeps [kH, kH + H) as soon as the audio
reaches unit kH + H + R; each call tokenizes only the tail after the last kept window (from C
units before it). So the units are a function of the audio alone (never of when partial
transcripts ran), equal whole-utterance tokenization while the utterance is shorter than H + R,
and one call costs at most the windows that became complete plus a tail shorter than C + H + R.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.model.speech_tokenizer import (BLOCK_SAMPLES, HOP_LENGTH, MODEL_SAMPLE_RATE,
                                                    SpeechTokenizer, check_waveform)

SAMPLES_PER_UNIT = 4 * HOP_LENGTH  # two stride-2 convolutions over 10 ms mel frames: 40 ms


@dataclass(frozen=True)
class UnitWindowConfig:
    """Window grid of the incremental tokenization; hop_s = 0 re-tokenizes the whole utterance."""

    hop_s: float = 3.0  # units kept per window (H)
    left_context_s: float = 1.0  # audio before a window, tokenized but not kept (C)
    right_context_s: float = 1.0  # audio a window waits for after its kept units (R)

    def __post_init__(self) -> None:
        unit_s = SAMPLES_PER_UNIT / MODEL_SAMPLE_RATE
        checks = (("hop_s", self.hop_s == 0 or self.hop_s >= unit_s, f"0 or >= {unit_s} s"),
                  ("left_context_s", self.left_context_s >= 0, ">= 0"),
                  ("right_context_s", self.right_context_s >= unit_s, f">= {unit_s} s"),
                  ("window", self.window_samples <= BLOCK_SAMPLES,
                   "left context + hop + right context <= 30 s (one tokenizer call)"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"UnitWindowConfig.{name}: {self}; expected {expected}")

    def units(self, seconds: float) -> int:
        """Whole units in `seconds` (40 ms each)."""
        return int(round(seconds * MODEL_SAMPLE_RATE / SAMPLES_PER_UNIT))

    @property
    def window_samples(self) -> int:
        """Audio samples of one full window (context, kept units, context)."""
        span = self.units(self.left_context_s) + self.units(self.hop_s)
        return (span + self.units(self.right_context_s)) * SAMPLES_PER_UNIT


class UnitStream:
    """Units of the utterance heard so far; windows of earlier calls are reused, not redone."""

    def __init__(self, tokenizer: SpeechTokenizer,
                 config: UnitWindowConfig = UnitWindowConfig()) -> None:
        self.tokenizer, self.config = tokenizer, config
        self._hop = config.units(config.hop_s)
        self._left = config.units(config.left_context_s)
        self._right = config.units(config.right_context_s)
        self.reset()

    def reset(self) -> None:
        """Forget the utterance (the next call starts a new one)."""
        self._kept: list[np.ndarray] = []
        self._heard = np.zeros(0, np.float32)  # the audio the kept windows were computed from

    @property
    def kept_units(self) -> int:
        """Units fixed by complete windows (they never change for this utterance)."""
        return self._hop * len(self._kept)

    def units(self, wave_16k: np.ndarray) -> np.ndarray:
        """Unit ids int64 of the whole utterance so far (its audio from the first sample)."""
        wave = check_waveform(wave_16k)
        if self._hop == 0:
            return self.tokenizer.waveform_to_units(wave)
        if not self._continues(wave):
            self.reset()
        while (self.kept_units + self._hop + self._right) * SAMPLES_PER_UNIT <= wave.size:
            self._keep_window(wave)
        tail = self._tokenize_from(wave, self.kept_units, wave.size)
        return np.concatenate(self._kept + [tail])

    def _continues(self, wave: np.ndarray) -> bool:
        """Whether wave extends the audio the kept windows came from."""
        heard = self._heard.size
        return wave.size >= heard and np.array_equal(wave[:heard], self._heard)

    def _keep_window(self, wave: np.ndarray) -> None:
        end = (self.kept_units + self._hop + self._right) * SAMPLES_PER_UNIT
        self._kept.append(self._tokenize_from(wave, self.kept_units, end)[:self._hop])
        self._heard = wave[:end].copy()

    def _tokenize_from(self, wave: np.ndarray, first_unit: int, end: int) -> np.ndarray:
        """Units first_unit.. of wave[:end], tokenized with the left context before them."""
        start = max(0, first_unit - self._left)
        units = self.tokenizer.waveform_to_units(wave[start * SAMPLES_PER_UNIT:end])
        return units[first_unit - start:]


def agreement(units: np.ndarray, reference: np.ndarray) -> float:
    """Share of positions where two unit sequences agree (over the longer length)."""
    longest = max(units.size, reference.size)
    if longest == 0:
        return 1.0
    shared = min(units.size, reference.size)
    return float(np.count_nonzero(units[:shared] == reference[:shared])) / longest

