"""Strict state-dict loading shared by the flow and HiFT modules."""
from __future__ import annotations

from typing import Mapping

import torch

from stream_omni_ros.errors import CheckpointError


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str,
                      what: str) -> None:
    """Load `state` into `module`; CheckpointError lists missing/unexpected/misshapen keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(f"{k}: {list(state[k].shape)} (expected {list(own[k].shape)})"
                       for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or misshapen:
        raise CheckpointError(f"{source} does not match the {what} configuration: "
                              f"missing keys {missing}, unexpected keys {unexpected}, "
                              f"wrong shapes {misshapen}")
    module.load_state_dict(state, strict=True)
