"""The training core's interface to the outside: a logger and a result.

The core knows nothing of MLflow, Optuna or recipes. The runner hands it a
:class:`TrainLogger` (MLflow in practice, memory in tests, Optuna's pruning
callback in tuning); a logger may raise to stop training (a pruned trial).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol


class TrainLogger(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Metrics at a step (the epoch for evaluation metrics, the iteration for losses)."""

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        """A file produced by the run (figures' raw data, checkpoints)."""


class NullLogger:
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        pass


@dataclass
class MemoryLogger:
    """Keeps everything in lists; for tests and for in-process callers."""

    metrics: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    artifacts: list[tuple[Path, str | None]] = field(default_factory=list)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.metrics.append((step, dict(metrics)))

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self.artifacts.append((Path(path), subdir))

    def history(self, key: str) -> list[tuple[int, float]]:
        return [(s, m[key]) for s, m in self.metrics if key in m]


@dataclass
class TrainResult:
    final_metrics: dict[str, float]  # `final/<source>/<metric>`, plus final/epoch
    checkpoint: Path  # the weights of the selected evaluation (final.pt)
    epochs_run: int  # epochs executed in this call (0 when everything was resumed)
