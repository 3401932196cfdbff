"""Run specs: one fully resolved training job, identified by a hash of what it computes.

The hash covers the job's semantic config only (not paths, tracking URI, executor,
worker counts). The same hash is the same run wherever it appears: DM² Table 1
"MD+TD+VD", Table 5 "4×BNI", Table 6 "Triplet / DM²" and Table 4 "DM² 4×" are
one run per dataset and seed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from benchmark.config import TrainConfig, digest, semantic_dict, to_dict

HASH_LENGTH = 12
VARIANT_MAX = 300  # characters of a variant label before it is cut


def _digest(data: Any) -> str:
    return digest(data)[:HASH_LENGTH]


def _without_seeds(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _without_seeds(v) for k, v in data.items() if k != "seed"}
    if isinstance(data, list):
        return [_without_seeds(v) for v in data]
    return data


def config_hash(cfg: TrainConfig) -> str:
    """Identity of a run: the same computation gives the same hash."""
    return _digest(semantic_dict(cfg))


def group_hash(cfg: TrainConfig) -> str:
    """The run's hash with every key named ``seed`` removed, the synthetic data's
    seed included: the ``bench.group`` tag, kept as it was first written so that
    stored runs keep their tag. Runs that repeat each other over seeds are a
    :func:`series_hash`; a group may hold several series (other synthetic data)."""
    return _digest(_without_seeds(semantic_dict(cfg)))


def _without_run_seeds(data: dict) -> dict:
    """A job's semantic dict without its own seed (and its teacher's, which follows it)."""
    out = {k: v for k, v in data.items() if k != "seed"}
    distill = out.get("distill")
    if isinstance(distill, dict) and isinstance(distill.get("teacher"), dict):
        out["distill"] = dict(distill, teacher=_without_run_seeds(distill["teacher"]))
    return out


def series_hash(cfg: TrainConfig) -> str:
    """Identity of a run up to its seed: the runs that repeat each other over seeds,
    and only those (a run on other synthetic data is another series)."""
    return _digest(_without_run_seeds(semantic_dict(cfg)))


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, list) and any(isinstance(v, dict) for v in data):
        out = {f"{prefix}.size": len(data)} if prefix.endswith("members") else {}
        for i, v in enumerate(data):
            out.update(_flat(v, f"{prefix}.{i}"))
        return out
    return {prefix: data}


def _text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


_MEMBER = re.compile(r"^(.*)\.members\.(\d+)\.(.+)$")


def variant_text(base: TrainConfig, cfg: TrainConfig) -> Optional[str]:
    """How ``cfg`` differs from ``base`` (its recipe row's own config), seeds aside:
    None when it does not, else ``key=value`` for each changed key, sorted, the
    cohort sugar used where every member changed alike (``cohort.member.embedding_dim=128``);
    e.g. ``cohort.lambda_mutual=5``. The label of a variant row in the report."""
    old = _flat(_without_run_seeds(semantic_dict(base)))
    new = _flat(_without_run_seeds(semantic_dict(cfg)))
    changed = {k: new.get(k) for k in set(old) | set(new) if old.get(k, _ABSENT) != new.get(k, _ABSENT)}
    if not changed:
        return None
    members: dict[tuple[str, str], dict[int, Any]] = {}
    for key in list(changed):
        m = _MEMBER.match(key)
        if m:
            members.setdefault((m.group(1), m.group(3)), {})[int(m.group(2))] = changed[key]
    for (prefix, name), by_index in members.items():
        size = new.get(f"{prefix}.members.size", 0)
        values = {json.dumps(v, sort_keys=True) for v in by_index.values()}
        if len(by_index) == size and len(values) == 1:
            for i in by_index:
                del changed[f"{prefix}.members.{i}.{name}"]
            changed[f"{prefix}.member.{name}"] = next(iter(by_index.values()))
    renamed = {k.replace(".members.size", ".size"): v for k, v in changed.items()}
    parts = [f"{k}={_text(v)}" for k, v in sorted(renamed.items())]
    text = ", ".join(parts)
    if len(text) > VARIANT_MAX:
        kept: list[str] = []
        for p in parts:
            if len(", ".join(kept + [p])) > VARIANT_MAX - 20:
                break
            kept.append(p)
        text = ", ".join(kept) + f", ... (+{len(parts) - len(kept)} more)"
    return text


_ABSENT = object()


@dataclass(frozen=True)
class Cell:
    """One cell of a paper table that a run fills."""

    paper: str
    table: str
    row: str
    column: str
    source: str  # logged source, e.g. member1, ensemble, teacher
    metric: str  # table metric, e.g. recall@1

    @property
    def table_key(self) -> str:
        return f"{self.paper}/{self.table}"

    def as_dict(self) -> dict:
        return {"paper": self.paper, "table": self.table, "row": self.row, "column": self.column,
                "source": self.source, "metric": self.metric}

    @classmethod
    def from_dict(cls, data: dict) -> "Cell":
        return cls(*(str(data[k]) for k in ("paper", "table", "row", "column", "source", "metric")))


@dataclass
class RunSpec:
    config: TrainConfig
    paper: str
    profile: str
    label: str  # human-readable: "dm2/table1 MD+TD+VD cub200 seed 0"
    cells: list[Cell] = field(default_factory=list)
    teacher: Optional["RunSpec"] = None
    recipes: list[str] = field(default_factory=list)  # recipe names that need this run

    @property
    def hash(self) -> str:
        return config_hash(self.config)

    @property
    def group(self) -> str:
        return group_hash(self.config)

    @property
    def series(self) -> str:
        return series_hash(self.config)

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def dataset(self) -> str:
        return self.config.data.dataset

    @property
    def tables(self) -> list[str]:
        return sorted({f"{c.paper}/{c.table}" for c in self.cells})

    def config_dict(self) -> dict:
        return to_dict(self.config)

    def summary(self) -> dict:
        return {
            "hash": self.hash,
            "group": self.group,
            "series": self.series,
            "label": self.label,
            "paper": self.paper,
            "profile": self.profile,
            "method": self.config.method,
            "dataset": self.dataset,
            "seed": self.seed,
            "needs": [self.teacher.hash] if self.teacher is not None else [],
            "cells": [c.as_dict() for c in self.cells],
        }
