"""Run specs: one fully resolved training job, identified by a hash of what it computes.

The hash covers the job's semantic config only (not paths, tracking URI, executor,
worker counts). The same hash is the same run wherever it appears: DM² Table 1
"MD+TD+VD", Table 5 "4×BNI", Table 6 "Triplet / DM²" and Table 4 "DM² 4×" are
one run per dataset and seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from benchmark.config import TrainConfig, digest, semantic_dict, to_dict

HASH_LENGTH = 12


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
    """Identity of a run up to its seeds: runs that repeat each other over seeds."""
    return _digest(_without_seeds(semantic_dict(cfg)))


@dataclass(frozen=True)
class Cell:
    """One cell of a paper table that a run fills."""

    paper: str
    table: str
    row: str
    column: str
    source: str  # logged source, e.g. member1, ensemble, teacher
    metric: str  # table metric, e.g. recall@1

    def as_dict(self) -> dict:
        return {"paper": self.paper, "table": self.table, "row": self.row, "column": self.column}


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
            "label": self.label,
            "paper": self.paper,
            "profile": self.profile,
            "method": self.config.method,
            "dataset": self.dataset,
            "seed": self.seed,
            "needs": [self.teacher.hash] if self.teacher is not None else [],
            "cells": [c.as_dict() for c in self.cells],
        }
