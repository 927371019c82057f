"""Tiny asset sets (tiny Stream-Omni + tiny CosyVoice) shared by this folder's tests."""
import pytest

from stream_omni_ros.tiny_assets import TinyAssets, ensure_tiny_assets


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> TinyAssets:
    """A private cache with the tiny set written once per test session."""
    return ensure_tiny_assets(tmp_path_factory.mktemp("tiny_cache"))


@pytest.fixture(scope="session")
def demo_assets(tiny_assets) -> TinyAssets:
    """The demo's set (real Llama-3 tokenizer, readable heads) in the same private cache."""
    return ensure_tiny_assets(tiny_assets.root.parent, kind="demo")
