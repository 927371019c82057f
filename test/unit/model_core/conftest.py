"""Shared tiny checkpoints for the model-core tests (written once per test session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from stream_omni_ros.model.checkpoint import LoadedStreamOmni, LoadOptions, load_stream_omni
from stream_omni_ros.model.tiny_checkpoint import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text/speech-only tiny checkpoint (no vision tower), sharded."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "novision", "novision")


@pytest.fixture(scope="session")
def tiny_loaded(tiny_folder: Path) -> LoadedStreamOmni:
    """The no-vision tiny checkpoint loaded in fp32."""
    return load_stream_omni(str(tiny_folder), LoadOptions(dtype="fp32"))
