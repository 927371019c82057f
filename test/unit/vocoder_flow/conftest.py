"""Fixtures: a tiny random flow written as flow.pt and loaded back through the strict loader."""
from pathlib import Path

import pytest
import torch

from stream_omni_ros.vocoder.flow import Flow, load_flow_weights, tiny_flow_config


def randomize_norms(flow: Flow) -> None:
    """Give LayerNorm/GroupNorm affine parameters and biases non-default values."""
    with torch.no_grad():
        for param in flow.parameters():
            if param.dim() == 1:
                param.normal_(0.0, 0.2)


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random flow.pt on disk (CosyVoice layout: a plain state dict)."""
    torch.manual_seed(1234)
    flow = Flow(tiny_flow_config())
    randomize_norms(flow)
    path = tmp_path_factory.mktemp("cosyvoice") / "flow.pt"
    torch.save(flow.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def tiny_flow(flow_file: Path) -> Flow:
    """The tiny flow loaded from disk into a freshly built module."""
    flow = Flow(tiny_flow_config()).eval()
    load_flow_weights(flow, torch.load(flow_file, weights_only=True), str(flow_file))
    return flow
