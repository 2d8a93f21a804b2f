"""Typed dataclass configs from YAML and `key=value` overrides; unknown keys and wrong types name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pspnet.errors import PSPNetError

T = TypeVar("T")


def from_dict(cls: type[T], data: Any, source: str, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses; every key and type is checked."""
    if not isinstance(data, dict):
        raise PSPNetError(f"{source}: {prefix or 'the file'} must be a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise PSPNetError(f"{source}: unknown key {prefix}{unknown[0]}; expected one of {', '.join(sorted(fields))}")
    values = {}
    for name, value in data.items():
        values[name] = coerce(hints[name], value, source, f"{prefix}{name}")
    try:
        return cls(**values)
    except TypeError as e:
        raise PSPNetError(f"{source}: {prefix.rstrip('.') or 'config'}: {e}") from None


def coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    """`value` as type `tp` (int, float, bool, str, Path, tuples/lists, Optional, Literal, dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, f"{key}.")  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, source, key)
            except PSPNetError as e:
                errors.append(str(e))
        raise PSPNetError(errors[0] if errors else f"{source}: {key}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise PSPNetError(f"{source}: {key} = {value!r}; expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v, source, key) for v in value)
        if origin is tuple and args:
            if len(value) != len(args):
                raise PSPNetError(f"{source}: {key} = {value!r}; expected {len(args)} values")
            return tuple(coerce(a, v, source, key) for a, v in zip(args, value, strict=True))
        return [coerce(args[0], v, source, key) for v in value] if args else list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected a mapping")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise PSPNetError(f"{source}: {key} = {value!r}; expected true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected an integer")
        try:
            return int(value)
        except ValueError:
            raise PSPNetError(f"{source}: {key} = {value!r}; expected an integer") from None
    if tp is float:
        if isinstance(value, bool):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected a number") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected a string")
        return str(value)
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise PSPNetError(f"{source}: {key} = {value!r}; expected a path")
        return Path(value)
    if tp is Any:
        return value
    raise PSPNetError(f"{source}: {key}: unsupported setting type {tp}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise PSPNetError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PSPNetError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PSPNetError(f"{path}: expected a mapping of settings at the top, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "command line") -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML: numbers, booleans, lists) to a nested mapping."""
    for item in overrides:
        if "=" not in item:
            raise PSPNetError(f"{source}: override {item!r} must look like key=value (e.g. train.lr=0.02)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise PSPNetError(f"{source}: {key}: {part} is not a group of settings")
        node[parts[-1]] = value
    return data


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """YAML file (optional) + overrides → dataclass `cls`, strictly checked."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides or [])
    return from_dict(cls, data, str(path) if path is not None else "config")


def to_dict(obj: Any) -> Any:
    """A dataclass config as plain YAML-able data (tuples → lists, Paths → strings)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj
