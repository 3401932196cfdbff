"""Overrides: what a command changes on top of the recipes, and where.

- ``--set key=value``: one layer for every selected run;
- ``--overrides FILE``: a YAML mapping of config keys to values (every selected
  run), or ``scope: {recipe, row, where, dataset, cropped}`` + ``set: {...}``
  (only the run the scope names; what ``tune`` writes as best.yaml).

A :class:`Context` carries them with the profile, seeds and row/dataset filters
into resolution. Each key is checked against the schema on its own, so an error
names the file (or flag) and the key.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.config import KeyNotFound, field_at
from benchmark.errors import ConfigError
from benchmark.recipes.layers import check_layer, expand_dotted, merge
from benchmark.recipes.yamlio import load_yaml, parse_scalar

PAPER_PROFILE = "paper"


@dataclass(frozen=True)
class Scope:
    """The one run an override applies to: a recipe's row (one of its runs, by
    ``where``, when the row has several) on one dataset. Written by `tune`, so
    a tuned value reaches only the run it was tuned for, not e.g. the λ-0
    Independent run of the same row."""

    recipe: str
    row: str
    dataset: Optional[str] = None
    where: Optional[str] = None  # the run's `where`, as canonical JSON
    cropped: Optional[bool] = None

    def matches(self, recipe: str, binding: Any, dataset: str, cropped: bool) -> bool:
        if (recipe, binding.row) != (self.recipe, self.row):
            return False
        if self.dataset is not None and dataset != self.dataset:
            return False
        if self.cropped is not None and cropped != self.cropped:
            return False
        return self.where is None or _canonical(binding.where) == self.where

    def describe(self) -> str:
        where = f" {self.where}" if self.where else ""
        data = f" on {self.dataset}" if self.dataset else ""
        return f"{self.recipe} row {self.row}{where}{data}{' cropped' if self.cropped else ''}"


def _canonical(where: dict) -> str:
    return json.dumps(where, sort_keys=True, ensure_ascii=False)


def parse_scope(data: Any, origin: str) -> Scope:
    """A ``scope:`` mapping of an overrides file -> :class:`Scope` (one-line errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with recipe, row and optionally dataset, where")
    unknown = set(data) - {"recipe", "row", "dataset", "where", "cropped"}
    if unknown:
        raise ConfigError(f"{origin}.{sorted(unknown)[0]}: unknown key (known: cropped, dataset, recipe, row, where)")
    if data.get("cropped") is not None and not isinstance(data["cropped"], bool):
        raise ConfigError(f"{origin}.cropped: expected true or false")
    for key in ("recipe", "row"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{origin}.{key}: required, a name")
    where = data.get("where")
    if where is not None and not isinstance(where, dict):
        raise ConfigError(f"{origin}.where: expected a mapping of column attribute -> value")
    dataset = data.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"{origin}.dataset: expected a dataset name")
    return Scope(recipe=data["recipe"], row=data["row"], dataset=dataset,
                 where=_canonical(where) if where else None, cropped=data.get("cropped"))


@dataclass
class Context:
    profile: str = PAPER_PROFILE
    seeds: list[int] = field(default_factory=lambda: [0])
    # (origin, layer), or (origin, layer, scope) for a layer that applies only
    # to the runs its Scope matches; applied in order.
    overrides: list[tuple] = field(default_factory=list)
    rows: Optional[list[str]] = None
    datasets: Optional[list[str]] = None


def override_layer(key: str, value: Any, origin: str) -> tuple[str, dict[str, Any]]:
    """One `--set key=value` (or override-file entry) as a checked layer.

    Errors read "<origin><rest of the key path>: <problem>" when `origin` ends
    with the key ("--set cohort.lamda: unknown key ..."), else "<origin>: <problem>".
    """
    layer = expand_dotted({key: value}, f"{origin}: ")
    try:
        check_layer(layer, "")
    except ConfigError as exc:
        msg = str(exc)
        if origin.endswith(key) and msg.startswith(key):
            raise ConfigError(origin + msg[len(key):]) from None
        raise ConfigError(f"{origin}: {msg}") from None
    return origin, layer


def flatten_keys(data: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}, 'c.d': 2} -> {'a.b': 1, 'c.d': 2}. A mapping stays one value
    where the schema says the key holds one (a free-form ``loss.params``) or names
    no field (the layer check then reports it)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v and _descends(key):
            out.update(flatten_keys(v, key))
        else:
            out[key] = v
    return out


def _descends(key: str) -> bool:
    """Whether a mapping given at ``key`` is read key by key (a section, or sugar
    such as cohort.member) rather than as one value."""
    try:
        info = field_at(key)
    except KeyNotFound:
        return False
    return dataclasses.is_dataclass(info.base)


def load_overrides_file(path: Path) -> tuple:
    """An overrides file as one (origin, layer) or (origin, layer, scope) entry.

    Each key is checked on its own (errors name it), but the file is applied as
    one layer, as a recipe's `set` is: split per key, a `loss.name` met after
    `loss.params` would start the parameters afresh and drop them.
    """
    data = load_yaml(Path(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: an overrides file must be a mapping of config keys to values")
    scope = None
    if "scope" in data:  # scope: {recipe, row, where, dataset} + set: {key: value}
        extra = set(data) - {"scope", "set"}
        if extra:
            raise ConfigError(f"{path}: {sorted(extra)[0]}: a scoped overrides file has only 'scope' and 'set'")
        scope = parse_scope(data["scope"], f"{path}: scope")
        data = data.get("set") or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: set: expected a mapping of config keys to values")
    layer: dict = {}
    for key, value in flatten_keys(data).items():
        layer = merge(layer, override_layer(key, value, f"{path}: {key}")[1])
    return (str(path), layer, scope) if scope else (str(path), layer)


def parse_set(item: str) -> tuple[str, dict[str, Any]]:
    """One ``--set KEY=VALUE`` (the value read as a YAML scalar or flow collection)."""
    key, eq, value = item.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set optim.lr=1e-4")
    return override_layer(key.strip(), parse_scalar(value), f"--set {key.strip()}")


def parse_overrides(files: list[str], sets: list[str]) -> list[tuple]:
    """The override layers of a command line: files first, then --set, in order."""
    return [load_overrides_file(Path(f)) for f in files] + [parse_set(s) for s in sets]
