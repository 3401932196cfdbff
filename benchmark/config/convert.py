"""Plain data <-> typed config: checked conversion of values to their field types,
and the plain (and semantic) form of a config.

Written by hand on purpose: the training core may not depend on pydantic or
YAML, and what we need (unknown keys, types, choices, each error naming its key
path) fits in a few lines over ``dataclasses``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from typing import Any, Literal, Union

from benchmark.errors import ConfigError

_NoneType = type(None)


def type_name(tp: Any) -> str:
    """How an error names a field's type: 'a number', "'adam' | 'sgd'", 'a list'..."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if tp is _NoneType:
        return "null"
    if tp is float:
        return "a number"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true/false"
    if tp is str:
        return "a string"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` as type ``tp`` (a field annotation); a ConfigError naming ``where`` otherwise."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and _NoneType in args:
            return None
        for alt in args:
            if alt is _NoneType:
                continue
            try:
                return convert(value, alt, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {type_name(tp)}, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = args
        return [convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        return from_dict(tp, value, where)
    raise TypeError(f"unsupported config type {tp!r} at {where}")


def from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from plain data; errors name ``where`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in hints or key not in names:
            raise ConfigError(f"{where}.{key}: unknown key (known keys: {', '.join(names)})")
        kwargs[key] = convert(value, hints[key], f"{where}.{key}")
    return cls(**kwargs)


def to_dict(obj: Any, *, semantic: bool = False) -> Any:
    """Plain-data form of a config; ``semantic`` drops runtime fields (and
    ``omit_none`` fields that are None, ``omit_default`` fields at their default)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in dataclasses.fields(obj):
            if semantic and f.metadata.get("runtime"):
                continue
            if semantic and f.metadata.get("omit_none") and getattr(obj, f.name) is None:
                continue
            if semantic and f.metadata.get("omit_default") and getattr(obj, f.name) == f.default:
                continue
            out[f.name] = to_dict(getattr(obj, f.name), semantic=semantic)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, semantic=semantic) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v, semantic=semantic) for k, v in obj.items()}
    return obj


def semantic_dict(cfg: Any) -> dict:
    """What the job computes: the input of its hash."""
    return to_dict(cfg, semantic=True)


def digest(data: Any) -> str:
    """SHA-256 of plain data in canonical JSON: the basis of run hashes and of
    the check that a checkpoint or teacher file belongs to a config."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
