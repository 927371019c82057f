"""Config dataclasses as ROS parameters on a real rclpy node: declare, override, live updates."""
from __future__ import annotations

from dataclasses import dataclass, field, fields

import pytest
import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter

from stream_omni_ros.errors import ConfigError
from stream_omni_ros.nodes.params import (LiveConfig, config_from_values, declare_config,
                                          parameter_specs)


@dataclass(frozen=True)
class Sampling:
    """Text sampling settings."""

    temperature: float = field(default=0.7, metadata={"runtime_safe": True,
                                                      "description": "softmax temperature"})
    max_new_tokens: int = 256
    stop_words: tuple[str, ...] = ("bye",)
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"sampling.temperature = {self.temperature}: expected >= 0")


@dataclass(frozen=True)
class Assistant:
    """Assistant settings."""

    name: str = "robot"
    aliases: list[str] = field(default_factory=list)
    volume: float = 1
    sampling: Sampling = field(default_factory=Sampling)


@pytest.fixture
def make_node():
    context = rclpy.Context()
    context.init()
    nodes = []

    def factory(overrides: dict | None = None) -> Node:
        node = Node("params_test", context=context, parameter_overrides=[
            Parameter(name, value=value) for name, value in (overrides or {}).items()])
        nodes.append(node)
        return node

    yield factory
    for node in nodes:
        node.destroy_node()
    context.try_shutdown()


def test_declares_defaults_and_applies_overrides(make_node):
    node = make_node({"assistant.sampling.max_new_tokens": 64, "assistant.name": "ada"})
    config = declare_config(node, Assistant, "assistant")
    assert config == Assistant(name="ada", sampling=Sampling(max_new_tokens=64))
    assert node.get_parameter("assistant.sampling.stop_words").value == ["bye"]
    assert isinstance(config.sampling.stop_words, tuple)
    assert config.aliases == []  # declared typed but unset: rclpy has no typed empty array
    assert node.describe_parameter("assistant.aliases").type == Parameter.Type.STRING_ARRAY
    assert node.get_parameter("assistant.volume").type_ == Parameter.Type.DOUBLE


def test_descriptors_carry_type_description_and_read_only(make_node):
    node = make_node()
    declare_config(node, Assistant, "assistant", runtime_safe={"assistant.sampling.greedy"})
    names = ["assistant.name", "assistant.sampling.temperature",
             "assistant.sampling.max_new_tokens", "assistant.sampling.stop_words",
             "assistant.sampling.greedy"]
    described = dict(zip(names, node.describe_parameters(names)))
    assert described["assistant.sampling.temperature"].description.startswith(
        "softmax temperature")
    assert "Text sampling settings" in described["assistant.sampling.max_new_tokens"].description
    assert {n for n, d in described.items() if not d.read_only} == {
        "assistant.sampling.temperature", "assistant.sampling.greedy"}
    assert described["assistant.sampling.stop_words"].type == Parameter.Type.STRING_ARRAY
    assert described["assistant.sampling.max_new_tokens"].type == Parameter.Type.INTEGER


def test_runtime_safe_fields_update_live_and_bad_values_are_rejected(make_node):
    node = make_node()
    seen = []
    live = LiveConfig(node, Assistant, "assistant", on_change=seen.append)
    result = node.set_parameters([Parameter("assistant.sampling.temperature", value=0.2)])[0]
    assert result.successful
    assert live.value.sampling.temperature == 0.2 and seen == [live.value]
    bad = node.set_parameters([Parameter("assistant.sampling.temperature", value=-1.0)])[0]
    assert not bad.successful and "temperature" in bad.reason and ">= 0" in bad.reason
    wrong_type = node.set_parameters([Parameter("assistant.sampling.temperature",
                                                value="hot")])[0]
    assert not wrong_type.successful
    frozen = node.set_parameters([Parameter("assistant.sampling.max_new_tokens", value=9)])[0]
    assert not frozen.successful and "read-only" in frozen.reason
    assert live.value == Assistant(sampling=Sampling(temperature=0.2)) and len(seen) == 1


def test_reconfigurable_fields_change_only_while_allowed(make_node):
    node = make_node()
    allowed = [False]
    live = LiveConfig(node, Assistant, "assistant", reconfigurable=lambda: allowed[0])
    tokens = node.describe_parameters(["assistant.sampling.max_new_tokens"])[0]
    assert not tokens.read_only and "applied by the next configure" in tokens.description
    refused = node.set_parameters([Parameter("assistant.sampling.max_new_tokens", value=9)])[0]
    assert not refused.successful and "only while the node is unconfigured" in refused.reason
    allowed[0] = True
    assert node.set_parameters([Parameter("assistant.sampling.max_new_tokens",
                                          value=9)])[0].successful
    assert live.value.sampling.max_new_tokens == 9
    bad = node.set_parameters([Parameter("assistant.sampling.temperature", value=-1.0)])[0]
    assert not bad.successful and ">= 0" in bad.reason


def test_other_parameters_of_the_node_are_left_alone(make_node):
    node = make_node()
    live = LiveConfig(node, Assistant, "assistant")
    node.declare_parameter("unrelated", 1)
    assert node.set_parameters([Parameter("unrelated", value=2)])[0].successful
    assert live.value == Assistant()


def test_engine_config_becomes_dotted_parameters(make_node):
    engine_config = pytest.importorskip("stream_omni_ros.engine.config")
    node = make_node({"vad.threshold": 0.3, "listen.mode": "on_request"})
    live = LiveConfig(node, engine_config.EngineConfig,
                      runtime_safe={"vad.threshold", "conversation.system_prompt"})
    expected = engine_config.EngineConfig()
    leaf_count = sum(len(fields(getattr(expected, f.name))) for f in fields(expected))
    assert len(parameter_specs(engine_config.EngineConfig)) == leaf_count
    assert live.value.vad.threshold == 0.3 and live.value.listen.mode == "on_request"
    assert live.value.image == expected.image
    assert node.set_parameters([Parameter("vad.threshold", value=0.6)])[0].successful
    assert live.value.vad.threshold == 0.6
    rejected = node.set_parameters([Parameter("vad.threshold", value=1.5)])[0]
    assert not rejected.successful and "vad.threshold" in rejected.reason


def test_invalid_override_at_startup_names_the_parameter(make_node):
    node = make_node({"assistant.sampling.max_new_tokens": "many"})
    with pytest.raises(ConfigError, match="assistant.sampling.max_new_tokens"):
        declare_config(node, Assistant, "assistant")


def test_config_from_values_checks_names_and_types():
    assert config_from_values(Assistant, {"sampling.greedy": True}) == Assistant(
        sampling=Sampling(greedy=True))
    with pytest.raises(ConfigError, match="unknown parameters.*sampling.greed"):
        config_from_values(Assistant, {"sampling.greed": True})
    with pytest.raises(ConfigError, match="sampling.temperature.*expected float"):
        config_from_values(Assistant, {"sampling.temperature": "warm"})


def test_unsupported_field_types_are_named():
    @dataclass(frozen=True)
    class Odd:
        """Has a dict field."""

        table: dict = field(default_factory=dict)

    with pytest.raises(ConfigError, match="odd.table"):
        parameter_specs(Odd, "odd")
