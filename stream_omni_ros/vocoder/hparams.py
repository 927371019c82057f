"""Safe reader of CosyVoice's hyperpyyaml ``cosyvoice.yaml``: tags are recorded, never executed.

CosyVoice's yaml uses hyperpyyaml tags (``!new:``, ``!name:``, ``!apply:``, ``!ref``) that would
import and call arbitrary Python. We only need the numbers in it, so a SafeLoader subclass turns
``!new:dotted.Class`` mappings into plain dicts with a ``"_target_"`` key, resolves ``!ref <name>``
to top-level plain values and replaces every other tag with None.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping

import yaml

from ..errors import ConfigError

_REF_PATTERN = re.compile(r"^<([A-Za-z_][A-Za-z0-9_]*)>$")


class _Ref:
    """Placeholder for a ``!ref <name>`` until the whole document is read."""

    def __init__(self, expression: str) -> None:
        self.expression = expression


class _InertLoader(yaml.SafeLoader):
    """SafeLoader that records hyperpyyaml tags as data instead of constructing objects."""


def _construct_tagged(loader: _InertLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if tag_suffix.startswith("new:"):
        target = tag_suffix[len("new:"):]
        if isinstance(node, yaml.MappingNode):
            return {**loader.construct_mapping(node, deep=True), "_target_": target}
        if isinstance(node, yaml.SequenceNode):
            return {"_target_": target, "_args_": loader.construct_sequence(node, deep=True)}
        return {"_target_": target}
    if tag_suffix == "ref" and isinstance(node, yaml.ScalarNode):
        return _Ref(loader.construct_scalar(node).strip())
    # !name:, !apply:, !include, !!python/... and anything else: inert on purpose.
    return None


_InertLoader.add_multi_constructor("!", _construct_tagged)
_InertLoader.add_multi_constructor("tag:yaml.org,2002:python/", _construct_tagged)


def _is_plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, list) and all(_is_plain(item) for item in value)


def _resolve_refs(value: Any, top_level: dict) -> Any:
    if isinstance(value, _Ref):
        match = _REF_PATTERN.match(value.expression)
        if match is None:
            return None
        referenced = top_level.get(match.group(1))
        return referenced if _is_plain(referenced) else None
    if isinstance(value, dict):
        return {key: _resolve_refs(item, top_level) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(item, top_level) for item in value]
    return value


def read_cosyvoice_yaml(path: str | Path) -> dict:
    """Read a cosyvoice.yaml into plain dicts, lists and scalars; nothing is imported or run."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read CosyVoice hyperparameters {path}: {error}") from error
    try:
        document = yaml.load(text, Loader=_InertLoader)  # noqa: S506 - inert SafeLoader
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got "
                          f"{type(document).__name__}")
    top_level = {key: item for key, item in document.items() if not isinstance(item, _Ref)}
    return _resolve_refs(document, top_level)


_MISSING = object()


def dataclass_values(cls: type, section: Mapping[str, Any], where: str,
                     paths: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """Values for the fields of dataclass `cls` found in a yaml section, typed like defaults.

    A field is read from ``section[name]`` or from the nested key path ``paths[name]``; absent
    fields are left out (the dataclass default applies); present but unusable values (None from
    an unresolved ``!ref``, wrong type) raise ConfigError naming ``where.path``.
    """
    values = {}
    for item in dataclasses.fields(cls):
        path = paths.get(item.name, (item.name,))
        node: Any = section
        for key in path:
            node = node.get(key, _MISSING) if isinstance(node, Mapping) else _MISSING
        if node is not _MISSING:
            values[item.name] = _coerce(f"{where}.{'.'.join(path)}", node, item.default)
    return values


def _coerce(name: str, value: Any, default: Any) -> Any:
    try:
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise TypeError
            return tuple(_coerce(name, item, default[0]) for item in value)
        if isinstance(value, (bool, list, tuple, dict)) or value is None:
            raise TypeError
        return type(default)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"cosyvoice.yaml {name}: expected a value like {default!r}, got "
                          f"{value!r}") from None
