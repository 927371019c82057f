"""Fixtures: a tiny random CosyVoice folder written in the real format and loaded back."""
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from stream_omni_ros.vocoder.cosyvoice import CosyVoiceVocoder, VocoderOptions
from stream_omni_ros.vocoder.streaming import StreamingSynthesizer
from stream_omni_ros.vocoder.tiny_cosyvoice import write_tiny_cosyvoice

OPTIONS = VocoderOptions(n_timesteps=2)
STREAM_UNITS = np.random.default_rng(7).integers(0, 32, 90).tolist()


@contextlib.contextmanager
def single_thread():
    """Tiny convolutions and matmuls: a second thread only adds contention on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread():
    """Every vocoder test runs single-threaded."""
    with single_thread():
        yield


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """cosyvoice.yaml, flow.pt, hift.pt, spk2info.pt with tiny random weights."""
    return write_tiny_cosyvoice(tmp_path_factory.mktemp("cosyvoice_tiny"))


@pytest.fixture(scope="session")
def vocoder(tiny_folder: Path) -> CosyVoiceVocoder:
    """The tiny folder loaded through the real loader (2 flow steps to keep tests fast)."""
    return CosyVoiceVocoder.load(tiny_folder, OPTIONS)


@pytest.fixture(scope="session")
def offline_wav(vocoder: CosyVoiceVocoder) -> np.ndarray:
    """Offline synthesis of STREAM_UNITS."""
    with single_thread():
        return vocoder.synthesize(STREAM_UNITS)


@pytest.fixture(scope="session")
def streamed_chunks(vocoder: CosyVoiceVocoder) -> list[tuple[int, np.ndarray]]:
    """(units pushed so far, chunk) for STREAM_UNITS pushed one unit at a time, then flushed."""
    stream = StreamingSynthesizer(vocoder)
    chunks = []
    with single_thread():
        for count, unit in enumerate(STREAM_UNITS, start=1):
            chunks += [(count, chunk) for chunk in stream.push([unit])]
        chunks += [(len(STREAM_UNITS), chunk) for chunk in stream.flush()]
    return chunks
