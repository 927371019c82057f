"""Frozen config dataclasses <-> ROS parameters (`prefix.field`, nested groups dotted).

Types come from the annotations, defaults from the dataclass (so YAML holds overrides only),
descriptions from the field metadata key "description" (written with
`stream_omni_ros.config_fields.described`) or else the class docstring. A field is
runtime-safe when its metadata says `runtime_safe=True` or its dotted name is passed in
`runtime_safe`. Every other parameter is declared read-only (it needs a restart), or, for a
LiveConfig given `reconfigurable`, may be set only while that says so (a lifecycle node: while
unconfigured) and takes effect at the next configure.
"""
from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.node import Node
from rclpy.parameter import Parameter

from stream_omni_ros.config_fields import DESCRIPTION
from stream_omni_ros.errors import ConfigError, StreamOmniError

ConfigT = TypeVar("ConfigT")
RUNTIME_SAFE = "runtime_safe"
RECONFIGURE_NOTE = "set while unconfigured; applied by the next configure"

_SCALAR_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER,
                 float: Parameter.Type.DOUBLE, str: Parameter.Type.STRING}
_ARRAY_TYPES = {bool: Parameter.Type.BOOL_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                float: Parameter.Type.DOUBLE_ARRAY, str: Parameter.Type.STRING_ARRAY}


@dataclass(frozen=True)
class ParameterSpec:
    """One leaf field of a config dataclass as a ROS parameter."""

    name: str
    path: tuple[str, ...]
    kind: Parameter.Type
    element_type: type
    is_tuple: bool
    default: Any
    description: str
    runtime_safe: bool

    def descriptor(self, reconfigurable: bool = False) -> ParameterDescriptor:
        """The ROS descriptor: type, description, and read_only for fixed fields."""
        if self.runtime_safe:
            suffix = ""
        elif reconfigurable:
            suffix = f" ({RECONFIGURE_NOTE})"
        else:
            suffix = " (read-only: needs a restart)"
        return ParameterDescriptor(name=self.name, type=int(self.kind),
                                   description=self.description + suffix,
                                   read_only=not (self.runtime_safe or reconfigurable))

    def to_field(self, value: Any) -> Any:
        """Convert a parameter value to the field's Python type; ConfigError if impossible."""
        if self.kind in _ARRAY_TYPES.values():
            if not isinstance(value, (list, tuple)) or not all(
                    _accepts(self.element_type, v) for v in value):
                raise ConfigError(f"parameter {self.name} = {value!r}: expected a list of "
                                  f"{self.element_type.__name__}")
            items = [self.element_type(v) for v in value]
            return tuple(items) if self.is_tuple else items
        if not _accepts(self.element_type, value):
            raise ConfigError(f"parameter {self.name} = {value!r} ({type(value).__name__}): "
                              f"expected {self.element_type.__name__}")
        return self.element_type(value)


def _accepts(element_type: type, value: Any) -> bool:
    # bool is an int in Python; an int is a fine float.
    if element_type is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if element_type is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, element_type)


def _kind_of(annotation: Any, name: str) -> tuple[Parameter.Type, type, bool]:
    """(parameter type, element type, is tuple) of an annotation; ConfigError if unsupported."""
    if annotation in _SCALAR_TYPES:
        return _SCALAR_TYPES[annotation], annotation, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, tuple) and args and args[0] in _ARRAY_TYPES:
        if origin is list or args[1:] in ((), (Ellipsis,)) or set(args) == {args[0]}:
            return _ARRAY_TYPES[args[0]], args[0], origin is tuple
    raise ConfigError(f"config field {name} has type {annotation!r}: expected bool, int, float, "
                      "str, a list/tuple of one of them, or a nested config dataclass")


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ConfigError(f"config field {field.name} has no default: every field needs one")


def parameter_specs(config_cls: type, prefix: str = "",
                    runtime_safe: Collection[str] = ()) -> list[ParameterSpec]:
    """The ROS parameters of a (nested) config dataclass, in field order."""
    if not dataclasses.is_dataclass(config_cls):
        raise ConfigError(f"{config_cls!r} is not a config dataclass")
    hints = typing.get_type_hints(config_cls)
    class_doc = (config_cls.__doc__ or config_cls.__name__).strip().splitlines()[0]
    specs = []
    for field in dataclasses.fields(config_cls):
        name = f"{prefix}.{field.name}" if prefix else field.name
        if dataclasses.is_dataclass(hints[field.name]):
            specs += [dataclasses.replace(s, path=(field.name, *s.path)) for s in
                      parameter_specs(hints[field.name], name, runtime_safe)]
            continue
        kind, element_type, is_tuple = _kind_of(hints[field.name], name)
        safe = bool(field.metadata.get(RUNTIME_SAFE, False)) or name in runtime_safe
        description = field.metadata.get(DESCRIPTION) or f"{class_doc} [{field.name}]"
        specs.append(ParameterSpec(name, (field.name,), kind, element_type, is_tuple,
                                   _default_of(field), description, safe))
    return specs


def _build(config_cls: type, values: Mapping[tuple[str, ...], Any]) -> Any:
    """Construct a nested dataclass from leaf values keyed by field path."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for field in dataclasses.fields(config_cls):
        if dataclasses.is_dataclass(hints[field.name]):
            kwargs[field.name] = _build(hints[field.name], {
                path[1:]: v for path, v in values.items() if path[0] == field.name})
        elif (field.name,) in values:
            kwargs[field.name] = values[(field.name,)]
    return config_cls(**kwargs)


def _replace(config: Any, values: Mapping[tuple[str, ...], Any]) -> Any:
    """dataclasses.replace along field paths (validation runs in each __post_init__)."""
    changes: dict[str, Any] = {p[0]: v for p, v in values.items() if len(p) == 1}
    for group in {p[0] for p in values if len(p) > 1}:
        changes[group] = _replace(getattr(config, group), {
            p[1:]: v for p, v in values.items() if len(p) > 1 and p[0] == group})
    return dataclasses.replace(config, **changes)


def _values_of(specs: list[ParameterSpec], values: Mapping[str, Any]) -> dict:
    by_name = {s.name: s for s in specs}
    return {by_name[n].path: by_name[n].to_field(v) for n, v in values.items()}


def config_from_values(config_cls: type[ConfigT], values: Mapping[str, Any],
                       prefix: str = "") -> ConfigT:
    """Build a config from parameter values keyed `prefix.field`; absent ones keep defaults."""
    specs = parameter_specs(config_cls, prefix)
    unknown = sorted(set(values) - {s.name for s in specs})
    if unknown:
        raise ConfigError(f"unknown parameters {unknown} for {config_cls.__name__}: expected "
                          f"some of {[s.name for s in specs]}")
    return _build(config_cls, _values_of(specs, values))


def declare_config(node: Node, config_cls: type[ConfigT], prefix: str = "",
                   runtime_safe: Collection[str] = (), reconfigurable: bool = False) -> ConfigT:
    """Declare one parameter per field (overrides from launch/YAML apply) and build the config."""
    specs = parameter_specs(config_cls, prefix, runtime_safe)
    values = {}
    for spec in specs:
        default = spec.to_field(spec.default)  # e.g. `x: float = 1` is declared as 1.0
        default = list(default) if spec.is_tuple else default
        # rclpy has no typed empty array value: declare typed but unset, and read that as [].
        initial = spec.kind if default == [] else default
        try:
            param = node.declare_parameter(spec.name, initial, spec.descriptor(reconfigurable))
        except InvalidParameterTypeException as err:
            raise ConfigError(f"parameter {spec.name}: {err}; expected {spec.kind.name}") from err
        values[spec.name] = [] if param.value is None and default == [] else param.value
    return _build(config_cls, _values_of(specs, values))


class LiveConfig(Generic[ConfigT]):
    """A config mirrored as node parameters; runtime-safe fields update it live.

    With `reconfigurable`, the other fields may be set too, but only while it returns True (the
    owner then rebuilds what uses them); otherwise they are read-only.
    """

    def __init__(self, node: Node, config_cls: type[ConfigT], prefix: str = "",
                 runtime_safe: Collection[str] = (),
                 on_change: Callable[[ConfigT], None] | None = None,
                 reconfigurable: Callable[[], bool] | None = None) -> None:
        self._specs = {s.name: s for s in parameter_specs(config_cls, prefix, runtime_safe)}
        self.value: ConfigT = declare_config(node, config_cls, prefix, runtime_safe,
                                             reconfigurable is not None)
        self._pending: ConfigT | None = None
        self._on_change = on_change
        self._reconfigurable = reconfigurable
        node.add_on_set_parameters_callback(self._validate)
        node.add_post_set_parameters_callback(self._commit)

    def _ours(self, params: list[Parameter]) -> dict[str, Any]:
        return {p.name: p.value for p in params if p.name in self._specs}

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        ours = self._ours(params)
        if not ours:
            return SetParametersResult(successful=True)
        frozen = sorted(n for n in ours if not self._specs[n].runtime_safe)
        if frozen and self._reconfigurable is None:
            return SetParametersResult(successful=False,
                                       reason=f"{frozen} are read-only at runtime")
        if frozen and not self._reconfigurable():
            return SetParametersResult(successful=False, reason=(
                f"{frozen} can change only while the node is unconfigured; expected: cleanup, "
                "set them, configure"))
        try:
            self._pending = _replace(self.value, _values_of(list(self._specs.values()), ours))
        except (StreamOmniError, TypeError, ValueError) as err:
            return SetParametersResult(successful=False, reason=str(err))
        return SetParametersResult(successful=True)

    def _commit(self, params: list[Parameter]) -> None:
        if self._pending is None or not self._ours(params):
            return
        self.value, self._pending = self._pending, None
        if self._on_change is not None:
            self._on_change(self.value)
