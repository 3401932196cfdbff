"""MLflow side of the runner: experiments, run lookup by hash, tags, params, a logger.

One experiment per paper. A run spec is one MLflow run, found again by its tag
``bench.hash``; a finished run is never repeated and an unfinished one is
resumed (same MLflow run id).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from benchmark.runner.home import artifact_location, tracking_uri
from benchmark.spec import RunSpec

TAG_HASH = "bench.hash"
TAG_GROUP = "bench.group"


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")


def flatten(data: Any, prefix: str = "") -> dict[str, str]:
    """Nested config -> {'data.batch_size': '120', ...} (lists of mappings indexed)."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(data, list) and any(isinstance(v, (dict, list)) for v in data):
        for i, v in enumerate(data):
            out.update(flatten(v, f"{prefix}.{i}"))
    else:
        out[prefix] = json.dumps(data) if isinstance(data, list) else str(data)
    return out


def git_commit() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha or "unknown") + ("-dirty" if dirty else "")


def versions() -> str:
    import torch
    import torchvision

    try:
        import pytorch_metric_learning as pml

        pml_v = pml.__version__
    except Exception:  # pragma: no cover
        pml_v = "?"
    from benchmark import __version__

    return f"benchmark={__version__} python={platform.python_version()} torch={torch.__version__} torchvision={torchvision.__version__} pml={pml_v}"


@dataclass
class RunRecord:
    run_id: str
    status: str  # RUNNING | FINISHED | FAILED | KILLED | SCHEDULED
    hash: str


class Tracker:
    """Thin wrapper over MlflowClient for what the runner needs."""

    def __init__(self, uri: Optional[str] = None):
        _quiet_mlflow()
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        self.mlflow = mlflow
        self.client = MlflowClient(self.uri)
        self._experiments: dict[str, str] = {}

    def experiment_id(self, paper: str) -> str:
        if paper not in self._experiments:
            exp = self.client.get_experiment_by_name(paper)
            if exp is None:
                location = artifact_location() if self.uri.startswith("sqlite:") else None
                exp_id = self.client.create_experiment(paper, artifact_location=location)
            else:
                exp_id = exp.experiment_id
            self._experiments[paper] = exp_id
        return self._experiments[paper]

    def find(self, hashes: Iterable[str]) -> dict[str, RunRecord]:
        """The best existing run per hash: a finished one, else the latest unfinished one.

        (MLflow's search grammar has no IN for tags, so the runs carrying a
        bench.hash tag are listed once and matched here.)
        """
        wanted = set(hashes)
        found: dict[str, RunRecord] = {}
        if not wanted:
            return found
        for r in self.search(f"tags.`{TAG_HASH}` != ''"):
            h = r.data.tags.get(TAG_HASH)
            if h not in wanted:
                continue
            rec = RunRecord(r.info.run_id, r.info.status, h)
            prev = found.get(h)
            if prev is None or prev.status != "FINISHED":
                found[h] = rec
        return found

    def search(self, filter_string: str = "") -> list:
        """All runs matching a filter across experiments, oldest first (paged)."""
        out, token = [], None
        while True:
            page = self.client.search_runs(
                experiment_ids=self._all_experiment_ids(),
                filter_string=filter_string,
                max_results=5000,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _all_experiment_ids(self) -> list[str]:
        from mlflow.entities import ViewType

        exps = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        return [e.experiment_id for e in exps] or ["0"]

    def start(self, spec: RunSpec, resume: Optional[RunRecord], extra_tags: Mapping[str, str] = ()):
        """Create (or reopen) the MLflow run of a spec; returns its run id."""
        if resume is not None:
            self.client.update_run(resume.run_id, status="RUNNING")
            return resume.run_id
        tags = {
            TAG_HASH: spec.hash,
            TAG_GROUP: spec.group,
            "bench.paper": spec.paper,
            "bench.tables": ",".join(spec.tables) or ",".join(spec.recipes),
            "bench.profile": spec.profile,
            "bench.seed": str(spec.seed),
            "bench.label": spec.label,
            "bench.method": spec.config.method,
            "bench.dataset": spec.dataset,
            "bench.git_commit": git_commit(),
            "bench.versions": versions(),
            "mlflow.runName": spec.label[:250],
        }
        if spec.teacher is not None:
            tags["bench.teacher_hash"] = spec.teacher.hash
        tags.update(dict(extra_tags))
        run = self.client.create_run(self.experiment_id(spec.paper), tags=tags)
        from mlflow.entities import Param

        params = [Param(k[:250], v[:6000]) for k, v in flatten(spec.config_dict()).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(run.info.run_id, params=params[i : i + 100])
        return run.info.run_id

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dst)))


class MlflowLogger:
    """The training core's TrainLogger, writing into one MLflow run."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.tracker.client.log_batch(self.run_id, metrics=items[i : i + 1000])

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self.tracker.client.log_artifact(self.run_id, str(path), subdir)
