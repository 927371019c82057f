"""Offline synthesis from a CosyVoice folder, and the loader's / input checks' errors."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_omni_ros.errors import CheckpointError, ConfigError, InputError
from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice

OPTIONS = VocoderOptions(n_timesteps=2)


@pytest.mark.parametrize("n_units", [1, 38, 41])
def test_offline_length_follows_cosyvoice(vocoder: CosyVoiceVocoder, n_units: int) -> None:
    wav = vocoder.synthesize(np.arange(n_units) % 32)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) == 256 * int(n_units / 25 * 22050 / 256)  # 38 units -> 33280 samples
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 0.99
    assert wav.std() > 1e-3  # audible, not silence


def test_seed_makes_synthesis_reproducible(vocoder: CosyVoiceVocoder) -> None:
    units = [3, 1, 4, 1, 5, 9, 2, 6]
    first = vocoder.synthesize(units, seed=11)
    assert np.array_equal(first, vocoder.synthesize(units, seed=11))
    assert not np.array_equal(first, vocoder.synthesize(units, seed=12))


@pytest.mark.parametrize("units, message", [
    ([], "no units"),
    ([0, 5, 32], "32 is outside the codebook"),
    ([-1, 2], "-1 is outside the codebook"),
    ([1.0, 2.0], "dtype float64"),
    (np.array([1, 2], dtype=np.float32), "dtype float32"),
    (torch.tensor([1.0]), "dtype torch.float32"),
    ([[1, 2]], "1-D"),
])
def test_bad_units_raise_input_error(vocoder: CosyVoiceVocoder, units, message: str) -> None:
    with pytest.raises(InputError, match=message):
        vocoder.synthesize(units)


def test_unknown_speaker_lists_the_available_ones(vocoder: CosyVoiceVocoder,
                                                  tiny_folder: Path) -> None:
    with pytest.raises(ConfigError, match="英文女"):
        vocoder.synthesize([1, 2, 3], speaker="nobody")
    with pytest.raises(ConfigError, match="'nobody'.*英文女"):
        CosyVoiceVocoder.load(tiny_folder, VocoderOptions(speaker="nobody"))


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "copy"))


def test_missing_file_names_file_and_folder(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path)
    (folder / "hift.pt").unlink()
    with pytest.raises(CheckpointError, match=f"hift.pt is missing .*{folder}"):
        CosyVoiceVocoder.load(folder, OPTIONS)


def test_50hz_folder_is_refused(tmp_path: Path) -> None:
    folder = write_tiny_cosyvoice(tmp_path / "cv50", input_frame_rate=50)
    with pytest.raises(CheckpointError, match="input_frame_rate is 50.*25"):
        CosyVoiceVocoder.load(folder, OPTIONS)


def test_hift_keys_are_checked_strictly(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path)
    state = torch.load(folder / "hift.pt", weights_only=True)
    state["conv_pre.weight"] = state.pop("conv_pre.weight_v")  # new-style naming is refused
    torch.save(state, folder / "hift.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['conv_pre.weight_v'\].*"
                                              r"unexpected keys \['conv_pre.weight'\]"):
        CosyVoiceVocoder.load(folder, OPTIONS)


def test_hift_keys_with_the_generator_prefix_load(vocoder: CosyVoiceVocoder, tiny_folder: Path,
                                                 tmp_path: Path) -> None:
    # hift.pt saved from CosyVoice's training wrapper names every key "generator.<key>"
    folder = _copy(tiny_folder, tmp_path)
    state = torch.load(folder / "hift.pt", weights_only=True)
    torch.save({f"generator.{key}": value for key, value in state.items()}, folder / "hift.pt")
    prefixed = CosyVoiceVocoder.load(folder, OPTIONS)
    units = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    assert np.array_equal(prefixed.synthesize(units, seed=2), vocoder.synthesize(units, seed=2))
    state["generator.conv_pre.weight_v"] = state["conv_pre.weight_v"]  # the same key twice
    torch.save(state, folder / "hift.pt")
    with pytest.raises(CheckpointError, match="both 'conv_pre.weight_v' and "
                                              "'generator.conv_pre.weight_v'"):
        CosyVoiceVocoder.load(folder, OPTIONS)


def test_pickled_objects_are_not_loaded(tiny_folder: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_folder, tmp_path)
    torch.save({"英文女": {"embedding": torch.zeros(1, 192), "extra": Path("x")}},
               folder / "spk2info.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        CosyVoiceVocoder.load(folder, OPTIONS)


def test_noise_is_addressed_by_absolute_position(vocoder: CosyVoiceVocoder) -> None:
    # streaming takes noise window by window; it must be the slice offline synthesis uses
    whole = vocoder.request_noise(seed=5).source.take(0, 200_000)
    pieces = vocoder.request_noise(seed=5).source
    for start, stop in [(10, 70_000), (65_000, 140_000), (190_000, 200_000)]:
        assert torch.equal(pieces.take(start, stop), whole[:, :, start:stop])
    assert not torch.equal(vocoder.request_noise(seed=6).source.take(0, 10), whole[:, :, :10])
