"""Where the harness keeps its state: BENCHMARK_HOME and the MLflow tracking URI.

    $BENCHMARK_HOME (default ./.benchmark)
      data/            generated synthetic datasets (smoke profile, tests)
      runs/<hash>/     a run's working files: checkpoint.pt, best.pt, final.pt
      optuna/          tuning studies (file storage)
      mlflow.db        the default MLflow store (SQLite), artifacts in mlartifacts/

MLFLOW_TRACKING_URI, when set, is honoured for tracking.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "BENCHMARK_HOME"


def benchmark_home() -> Path:
    return Path(os.environ.get(HOME_ENV, ".benchmark")).resolve()


def runs_dir() -> Path:
    return benchmark_home() / "runs"


def data_cache_dir() -> Path:
    return benchmark_home() / "data"


def run_dir(run_hash: str) -> Path:
    return runs_dir() / run_hash


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else sqlite:///<BENCHMARK_HOME>/mlflow.db (creates nothing)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{benchmark_home() / 'mlflow.db'}"


def tracking_uri() -> str:
    """The tracking URI a writer uses: :func:`default_tracking_uri`, with the home
    folder made so that the SQLite file can be created."""
    uri = default_tracking_uri()
    if uri.startswith("sqlite:///"):
        benchmark_home().mkdir(parents=True, exist_ok=True)
    return uri


def artifact_location() -> str:
    return (benchmark_home() / "mlartifacts").as_uri()
