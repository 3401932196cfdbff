"""The writing side of MLflow, for the runner and tune: experiments, runs with their
tags and params, metrics, artifacts, and the training core's logger.

One experiment per paper. A run spec is one MLflow run, found again by its tag
``bench.hash``; a finished run is never repeated and an unfinished one is
resumed (same MLflow run id). Reading for reports: :mod:`benchmark.runner.store`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from benchmark import names as N
from benchmark.config import to_dict
from benchmark.recipes.spec import RunSpec
from benchmark.runner.home import artifact_location, tracking_uri
from benchmark.runner.records import RunRecord, cell_key, encode_cells, merge_cells


def quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")


PROBE_TIMEOUT_S = 5.0


def probe(uri: str) -> None:
    """For an HTTP tracking server: fail within seconds, in one line naming the URI,
    when it does not answer (MLflow's own client retries for minutes first)."""
    if not uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    from benchmark.errors import UserError

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # it answered (an older server without /health, or auth in front): reachable
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"tracking URI {uri}: the MLflow server does not answer within {PROBE_TIMEOUT_S:g} s "
                        f"({reason}); start it, or unset MLFLOW_TRACKING_URI to track locally") from None


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


def identity_tags(spec: RunSpec) -> dict[str, str]:
    """The tags that make a run findable as ``spec`` and fill its table cells."""
    tags = {
        N.TAG_HASH: spec.hash,
        N.TAG_GROUP: spec.group,
        N.TAG_SERIES: spec.series,
        N.TAG_PAPER: spec.paper,
        N.TAG_TABLES: ",".join(spec.tables) or ",".join(spec.recipes),
        N.TAG_PROFILE: spec.profile,
        N.TAG_SEED: str(spec.seed),
        N.TAG_LABEL: spec.label,
        N.TAG_METHOD: spec.config.method,
        N.TAG_DATASET: spec.dataset,
        N.TAG_RUN_NAME: spec.label[:250],
        **encode_cells(cell_key(c) for c in spec.cells),
    }
    if spec.teacher is not None:
        tags[N.TAG_TEACHER] = spec.teacher.hash
    return tags


@contextlib.contextmanager
def _sqlite_init_lock(uri: str):
    """Serialise the first use of a SQLite store among processes (its schema is
    created on first use, and two creators at once fail)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    path = Path(uri[len("sqlite:///"):])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.init-lock", "w") as fh:
        fcntl.lockf(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(fh, fcntl.LOCK_UN)


class Tracker:
    """Thin wrapper over MlflowClient for what the runner and tune write."""

    def __init__(self, uri: Optional[str] = None):
        quiet_mlflow()
        import mlflow
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        probe(self.uri)
        mlflow.set_tracking_uri(self.uri)
        with _sqlite_init_lock(self.uri):  # two processes creating one new SQLite store at once race
            self.client = MlflowClient(self.uri)
            self.client.search_experiments(max_results=1)
        self._experiments: dict[str, str] = {}

    # -- experiments and lookup ----------------------------------------------
    def experiment_id(self, name: str) -> str:
        if name not in self._experiments:
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                location = artifact_location() if self.uri.startswith("sqlite:") else None
                try:
                    exp_id = self.client.create_experiment(name, artifact_location=location)
                except Exception:  # another process created it first: use theirs
                    exp = self.client.get_experiment_by_name(name)
                    if exp is None:
                        raise
                    exp_id = exp.experiment_id
            else:
                exp_id = exp.experiment_id
            self._experiments[name] = exp_id
        return self._experiments[name]

    def find(self, hashes: Iterable[str]) -> dict[str, RunRecord]:
        """The best existing run per hash: a finished one, else the latest unfinished one.

        (MLflow's search grammar has no IN for tags, so the runs carrying a
        bench.hash tag are listed once and matched here.)
        """
        wanted = set(hashes)
        found: dict[str, RunRecord] = {}
        if not wanted:
            return found
        for r in self.search(f"tags.`{N.TAG_HASH}` != ''"):
            h = r.data.tags.get(N.TAG_HASH)
            if h not in wanted:
                continue
            prev = found.get(h)  # runs come oldest first: the latest finished one wins
            if prev is None or prev.status != "FINISHED" or r.info.status == "FINISHED":
                found[h] = RunRecord.from_run(r)
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

    # -- writing -------------------------------------------------------------
    def start_run(self, experiment: str, tags: Mapping[str, str], params: Mapping[str, str] = ()) -> str:
        """A new run in ``experiment`` (by name) with its tags and params; returns its id.
        A ``mlflow.parentRunId`` tag nests it under that run."""
        from mlflow.entities import Param

        run = self.client.create_run(self.experiment_id(experiment), tags=dict(tags))
        items = [Param(k[:250], str(v)[:6000]) for k, v in dict(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run.info.run_id, params=items[i: i + 100])
        return run.info.run_id

    def start(self, spec: RunSpec, resume: Optional[RunRecord] = None, extra_tags: Mapping[str, str] = ()) -> str:
        """Create (or reopen) the MLflow run of a spec; returns its run id."""
        if resume is not None:
            self.reopen(resume.run_id)
            self.add_cells(resume, spec)
            if extra_tags:
                self.set_tags(resume.run_id, extra_tags)
            return resume.run_id
        tags = {**identity_tags(spec), N.TAG_GIT: git_commit(), N.TAG_VERSIONS: versions(), **dict(extra_tags)}
        return self.start_run(spec.paper, tags, flatten(spec.config_dict()))

    def log_config(self, run_id: str, spec: RunSpec, path: Path) -> None:
        """The run's config.json: its spec summary (cells included) and full config,
        the record a report reads back to tell how a variant differs from its row."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"spec": spec.summary(), "config": to_dict(spec.config)}, indent=2))
        self.log_artifact(run_id, path)

    def add_cells(self, record: RunRecord, spec: RunSpec, legacy: Iterable = ()) -> None:
        """Record that ``record``'s run also fills ``spec``'s cells (a later command
        selected the same run through another table). ``legacy``: the cells of a
        run logged before cells were tagged, read from its config.json."""
        have = record.cells()
        cells = merge_cells(have if have is not None else legacy, (cell_key(c) for c in spec.cells))
        if have is not None and cells == set(have):
            return
        tags = encode_cells(cells)
        tags[N.TAG_SERIES] = spec.series
        self.set_tags(record.run_id, tags)
        record.tags.update(tags)

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:8000]) for k, v in tags.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(run_id, tags=items[i: i + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, int(step)) for k, v in metrics.items()]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i: i + 1000])

    def log_artifact(self, run_id: str, path: Path, subdir: Optional[str] = None) -> None:
        self.client.log_artifact(run_id, str(path), subdir)

    @property
    def remote(self) -> bool:
        """Whether runs are tracked on a server (other machines see its artifacts)."""
        return self.uri.startswith(("http://", "https://", "databricks"))

    def reopen(self, run_id: str) -> None:
        self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    def local_artifact(self, run_id: str, path: str) -> Optional[Path]:
        """The file of an artifact when the artifact store is a local folder (read in
        place, no copy); None for a remote store or a missing file."""
        from urllib.parse import unquote, urlparse

        uri = self.client.get_run(run_id).info.artifact_uri or ""
        if not uri.startswith("file:"):
            return None
        local = Path(unquote(urlparse(uri).path)) / path
        return local if local.is_file() else None

    def delete_artifacts(self, run_id: str, path: str) -> bool:
        """Remove one artifact folder of a run (a finished run's resume checkpoint on a
        server); False when the artifact store cannot delete."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        try:
            get_artifact_repository(self.client.get_run(run_id).info.artifact_uri).delete_artifacts(path)
        except Exception:
            return False
        return True

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dst)))


class MlflowLogger:
    """The training core's TrainLogger, writing into one MLflow run. Resume
    checkpoints are uploaded only to a tracking server (so a job requeued on
    another node resumes from them); a local store would only copy them."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker = tracker
        self.run_id = run_id

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.tracker.log_metrics(self.run_id, metrics, step)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        from benchmark.train.checkpoints import ARTIFACT_DIR

        if subdir == ARTIFACT_DIR and not self.tracker.remote:
            return
        self.tracker.log_artifact(self.run_id, path, subdir)
