"""Typed dataclass configs from YAML and `key=value` overrides; unknown keys and wrong types name the key and where
its value came from: `file:line` for the YAML file, the override itself for the command line."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml

from pspnet.errors import PSPNetError

T = TypeVar("T")


Origins = dict[str, str]  # dotted key → where its value came from ("run.yaml:12", "command line train.lr=x")

SQUARE = "one number N means N×N"
HeightWidth = Annotated[tuple[int, int], SQUARE]  # a (height, width) setting: `crop_size: 473` is 473×473, as the CLI's


def from_dict(cls: type[T], data: Any, source: str, prefix: str = "", origins: Origins | None = None) -> T:
    """Build dataclass `cls` from a mapping, recursing into nested dataclasses; every key and type is checked, and
    an error names the key and, with `origins`, where its value came from (else `source`)."""
    origins = origins or {}
    if not isinstance(data, dict):
        where = origin_of(prefix.rstrip("."), origins, source)
        raise PSPNetError(f"{where}: {prefix or 'the file'} must be a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = origin_of(f"{prefix}{unknown[0]}", origins, source)
        starting = [f for f in fields if f.startswith(unknown[0])]  # train.iter: train.iterations
        close = starting if len(starting) == 1 else difflib.get_close_matches(unknown[0], list(fields), n=1,
                                                                             cutoff=0.6)
        meant = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise PSPNetError(f"{where}: unknown key {prefix}{unknown[0]}{meant}; expected one of "
                          f"{', '.join(sorted(fields))}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        values[name] = coerce(hints[name], value, origin_of(key, origins, source), key, origins)
    try:
        return cls(**values)
    except TypeError as e:
        raise PSPNetError(f"{origin_of(prefix.rstrip('.'), origins, source)}: {prefix.rstrip('.') or 'config'}: "
                          f"{e}") from None
    except PSPNetError as e:  # a setting's own check (e.g. train.lr must be positive): say where it was set
        text = str(e)  # a setting named by its key first ("train.head_lr_mult = -1; ... of the lr": not the lr's)
        named = [name for name in data if f"{prefix}{name}" in text] or [
            name for name in data for said in (name, name.replace("_", " "))  # "crop size (0, 0): ..."
            if text.startswith(f"{said} ") or f" {said} " in f" {text} "]
        key = f"{prefix}{named[0]}" if named else prefix.rstrip(".")
        where = origin_of(key, origins, source)
        raise PSPNetError(f"{where}: {e}" if not key or key in str(e) else f"{where}: {key}: {e}") from None


def origin_of(key: str, origins: Origins, source: str) -> str:
    """Where `key`'s value came from: its own origin, else its nearest group's, else that of a setting under it (a
    mistyped group set only by `trian.lr=0.1`), else `source`."""
    under = next((origins[k] for k in origins if k.startswith(f"{key}.")), None)
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return under or source


def comma_numbers(value: str) -> str | list[str]:
    """"0.5,1" (a list written as on other tools' command lines, `val.scales=0.5,1`) → ["0.5", "1"]; any other text
    as it is."""
    parts = [part.strip() for part in value.split(",")]
    try:
        [float(part) for part in parts]
    except ValueError:
        return value
    return parts


def coerce(tp: Any, value: Any, source: str, key: str, origins: Origins | None = None) -> Any:
    """`value` as type `tp` (int, float, bool, str, Path, tuples/lists, Optional, Literal, dataclasses)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (list, tuple, Annotated) and isinstance(value, str) and "," in value:
        value = comma_numbers(value)
    if origin is Annotated:
        if SQUARE in args[1:] and isinstance(value, (int, str)) and not isinstance(value, bool):
            value = [value, value]
        return coerce(args[0], value, source, key, origins)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, f"{key}.", origins)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(arg, value, source, key)
            except PSPNetError as e:
                errors.append(str(e))
        none = ", or null for none" if type(None) in args else ""  # `imagenet: false` meant as no weights
        raise PSPNetError(f"{errors[0]}{none}" if errors else f"{source}: {key}: bad value {value!r}")
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
        return Path(value).expanduser()  # `~/data` as a shell reads it (else a folder named ~ was made here)
    if tp is Any:
        return value
    raise PSPNetError(f"{source}: {key}: unsupported setting type {tp}")


def folder_configs(folder: Path) -> str:
    """What in `folder` could be the config meant: a training run's config.yaml, or the YAML files it holds."""
    if (folder / "config.yaml").is_file():
        return f"; the config in it is {folder / 'config.yaml'}"
    try:
        found = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file())
    except OSError:
        return ""
    if not found:
        return ""
    shown = ", ".join(found[:6]) + (f", … ({len(found) - 6} more)" if len(found) > 6 else "")
    return f"; it holds {shown}: e.g. {folder / found[0]}"


def load_yaml(path: str | Path, origins: Origins | None = None) -> dict[str, Any]:
    """The mapping in a YAML file; with `origins`, each dotted key's `file:line` is recorded there."""
    path = Path(path)
    if path.is_dir():
        raise PSPNetError(f"{path}: a folder, not a config file{folder_configs(path)}")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        other = [p for p in (path.with_suffix(s) for s in (".yaml", ".yml")) if p != path and p.is_file()]
        hint = f"; {other[0]} exists" if other and not path.exists() else ""
        raise PSPNetError(f"{path}: cannot read config ({e.strerror}){hint}") from None
    except UnicodeDecodeError:
        raise PSPNetError(f"{path}: not a text file; expected a YAML config (e.g. configs/camvid.yaml)") from None
    try:
        data = yaml.safe_load(text)
        _record_lines(yaml.compose(text), "", str(path), {} if origins is None else origins)
    except yaml.YAMLError as e:
        raise PSPNetError(yaml_problem(path, e)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise PSPNetError(f"{path}: expected a mapping of settings at the top, got {type(data).__name__}")
    return data


def yaml_problem(path: Path, error: yaml.YAMLError) -> str:
    """One line for a YAML syntax error: the file and line where the parser stopped, its complaint, and the usual
    cause when it is a tab."""
    mark = getattr(error, "problem_mark", None)
    where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    text = f"{context}, {problem}" if context and mark is not None else problem
    tab = "; YAML indents with spaces, not tabs" if "\\t" in text or "\t" in text else ""
    return f"{where}: not valid YAML ({text}){tab}"


def _record_lines(node: Any, prefix: str, path: str, origins: Origins) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + 1
            if key in seen:  # YAML keeps the last silently; one of the two is a mistake
                raise PSPNetError(f"{path}:{line}: {key} is set twice (lines {seen[key]} and {line}); keep one")
            seen[key] = line
            origins[key] = f"{path}:{line}"
            _record_lines(value_node, f"{key}.", path, origins)


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "command line",
                    origins: Origins | None = None) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides (value parsed as YAML: numbers, booleans, lists) to a nested mapping; with
    `origins`, each overridden key is recorded as coming from the command line."""
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
        if origins is not None:
            origins[key] = f"{source} {item}"
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


def changed_settings(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[str]:
    """`key before → after` for every dotted setting that differs between two config mappings (a key only one side
    has counts as a change)."""
    changes = []
    for key in sorted(before.keys() | after.keys(), key=lambda k: (k not in before, str(k))):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += changed_settings(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key} {_as_yaml(a)} → {_as_yaml(b)}")
    return changes


def _as_yaml(value: Any) -> str:
    """A setting's value as it is written in a config file: true/false/null, not Python's True/False/None."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)
