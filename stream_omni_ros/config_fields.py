"""Config dataclass fields that carry a one-line description for `ros2 param describe`.

The description lives in the field metadata under "description" (read by nodes/params.py); the
default stays written in the dataclass field itself, never here.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from stream_omni_ros.errors import ConfigError

DESCRIPTION = "description"
ValueT = TypeVar("ValueT")


def _with_units(description: str, units: str) -> str:
    if not description.strip():
        raise ConfigError(f"config field description {description!r} is empty; expected one "
                          "line saying what the field sets")
    return f"{description} [{units}]" if units else description


def described(default: ValueT, description: str, *, units: str = "") -> Any:
    """A dataclass field with an immutable default and its description (units in brackets)."""
    return dataclasses.field(default=default,
                             metadata={DESCRIPTION: _with_units(description, units)})


def described_factory(factory: Callable[[], ValueT], description: str, *,
                      units: str = "") -> Any:
    """A dataclass field whose default comes from factory (lists, nested configs), described."""
    return dataclasses.field(default_factory=factory,
                             metadata={DESCRIPTION: _with_units(description, units)})
