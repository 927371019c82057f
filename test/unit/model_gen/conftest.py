"""A tiny random checkpoint written in the real on-disk format and loaded by the real loader."""
import numpy as np
import pytest
import torch

from stream_omni_ros.model.checkpoint import LoadOptions, load_stream_omni
from stream_omni_ros.model.generation import StreamOmniGenerator
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny matmuls gain nothing from threads; on a busy 2-core box they thrash (5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_loaded(tmp_path_factory):
    folder = write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_gen"), variant="anyres")
    return load_stream_omni(str(folder), LoadOptions(device="cpu", dtype="fp32",
                                                     local_files_only=True))


@pytest.fixture(scope="session")
def generator(tiny_loaded):
    return StreamOmniGenerator(tiny_loaded)


@pytest.fixture(scope="session")
def image():
    return np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
