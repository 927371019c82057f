"""Every omni_node parameter explains itself in `ros2 param describe` (field descriptions)."""
from __future__ import annotations

from dataclasses import dataclass, fields

import pytest
import rclpy
from rclpy.node import Node

from stream_omni_ros.config_fields import described, described_factory
from stream_omni_ros.engine.config import EngineConfig
from stream_omni_ros.engine.runtime_config import RuntimeConfig
from stream_omni_ros.errors import ConfigError
from stream_omni_ros.nodes.omni_config import RUNTIME_SAFE_ENGINE_FIELDS, OmniNodeConfig
from stream_omni_ros.nodes.params import LiveConfig, declare_config, parameter_specs

OMNI_CONFIGS = (EngineConfig, RuntimeConfig, OmniNodeConfig)
UNIT_SUFFIXES = {"_s": "[s]", "_ms": "[ms]", "_hz": "[Hz]"}


def _fallback_description(config_cls: type, path: tuple[str, ...]) -> str:
    """What params.py writes when a field has no description of its own."""
    for group in path[:-1]:
        config_cls = {f.name: f for f in fields(config_cls)}[group].default_factory
    return f"{config_cls.__doc__.strip().splitlines()[0]} [{path[-1]}]"


@pytest.mark.parametrize("config_cls", OMNI_CONFIGS, ids=lambda c: c.__name__)
def test_every_omni_parameter_has_a_field_specific_description(config_cls):
    specs = parameter_specs(config_cls)
    generic = [s.name for s in specs
               if s.description == _fallback_description(config_cls, s.path)]
    assert generic == []
    too_short = [s.name for s in specs if len(s.description.split()) < 4]
    assert too_short == []


def test_descriptions_name_units_and_are_not_copies():
    specs = [s for config_cls in OMNI_CONFIGS for s in parameter_specs(config_cls)]
    missing_units = [s.name for s in specs for suffix, units in UNIT_SUFFIXES.items()
                     if s.name.endswith(suffix) and not s.description.endswith(units)]
    assert missing_units == []
    descriptions = [s.description for s in specs]
    assert len(set(descriptions)) == len(descriptions)


def test_omni_node_parameters_describe_themselves_on_a_node():
    context = rclpy.Context()
    context.init()
    node = Node("describe_test", context=context)
    try:
        declare_config(node, OmniNodeConfig)
        LiveConfig(node, RuntimeConfig, reconfigurable=lambda: True)
        LiveConfig(node, EngineConfig, runtime_safe=RUNTIME_SAFE_ENGINE_FIELDS,
                   reconfigurable=lambda: True)
        silence, threshold, pad = node.describe_parameters(
            ["vad.min_silence_ms", "vad.threshold", "vad.speech_pad_ms"])
        assert silence.description.startswith("pause after speech that ends the utterance")
        assert "[ms]" in silence.description and "next configure" in silence.description
        assert threshold.description.startswith("silero-vad speech probability")
        assert not threshold.read_only and "read-only" not in threshold.description
        assert pad.description != silence.description
    finally:
        node.destroy_node()
        context.try_shutdown()


@dataclass(frozen=True)
class Inner:
    """Inner group."""

    rate: float = described(2.5, "chunks per second", units="Hz")


@dataclass(frozen=True)
class Outer:
    """Outer group."""

    names: list[str] = described_factory(list, "names of things")
    inner: Inner = described_factory(Inner, "inner group")


def test_described_fields_keep_defaults_in_the_dataclass():
    first, second = Outer(), Outer()
    assert first.inner.rate == 2.5 and first.names == [] and first.names is not second.names
    assert [s.description for s in parameter_specs(Outer)] == [
        "names of things", "chunks per second [Hz]"]
    with pytest.raises(ConfigError, match="empty"):
        described(1, " ")
