"""The reading side of MLflow: what the report and tune read back of finished runs.

Read-only: a store that does not exist (a SQLite file never written) reads as
"nothing ran" and is never created. Every failure to reach the store is one
line naming the tracking URI.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Optional

from benchmark import names as N
from benchmark.errors import ConfigError, UserError
from benchmark.runner.home import default_tracking_uri
from benchmark.runner.records import RunRecord, cell_key
from benchmark.runner.tracking import probe, quiet_mlflow

_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def store_label(uri: str) -> str:
    """How a page names the store it came from: no machine paths, no credentials."""
    if uri.startswith("sqlite:"):
        return f"local SQLite store ({Path(uri.split(':///', 1)[-1]).name})"
    if uri.startswith("file:") or "://" not in uri:
        return "local file store"
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


class RunStore:
    """Read-only view of an MLflow tracking store (imports mlflow only when used)."""

    def __init__(self, tracking_uri: Optional[str] = None):
        self.uri = tracking_uri or default_tracking_uri()
        self._client = None
        self._runs: dict[str, list[RunRecord]] = {}
        self._configs: dict[str, Optional[dict]] = {}
        self._tmp: Optional[tempfile.TemporaryDirectory] = None

    @property
    def label(self) -> str:
        return store_label(self.uri)

    def exists(self) -> bool:
        """False for a sqlite store whose file is missing (nothing ran; do not create one)."""
        if self.uri.startswith("sqlite:///"):
            return Path(self.uri[len("sqlite:///"):]).exists()
        if self.uri.startswith("file:"):
            from urllib.parse import urlparse

            return Path(urlparse(self.uri).path).exists()
        if "://" not in self.uri:
            return Path(self.uri).exists()
        return True

    @property
    def client(self):
        if self._client is None:
            quiet_mlflow()
            probe(self.uri)
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _error(self, exc: BaseException, what: str) -> UserError:
        return UserError(f"tracking URI {self.uri}: cannot {what} ({_first_line(exc)})")

    def _experiment_ids(self) -> list[str]:
        from mlflow.entities import ViewType

        ids: list[str] = []
        token = None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                                  page_token=token)
            ids += [e.experiment_id for e in page]
            token = page.token
            if not token:
                return ids

    def search(self, filter_string: str, experiment_ids: Optional[list[str]] = None) -> list[RunRecord]:
        """Every active run matching an MLflow filter (all experiments by default)."""
        if not self.exists():
            return []
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        out: list[RunRecord] = []
        try:
            ids = experiment_ids if experiment_ids is not None else self._experiment_ids()
            for start in range(0, len(ids), 100):
                token = None
                while True:
                    page = self.client.search_runs(ids[start:start + 100], filter_string,
                                                   run_view_type=ViewType.ACTIVE_ONLY,
                                                   max_results=5000, page_token=token)
                    out += [RunRecord.from_run(run) for run in page]
                    token = page.token
                    if not token:
                        break
        except (MlflowException, OSError) as exc:
            raise self._error(exc, "search runs") from None
        return out

    def finished_runs(self, profile: str) -> list[RunRecord]:
        """Every active FINISHED run of the harness tagged with this profile, in every
        experiment: one query for a whole report (MLflow's search has no IN for tags)."""
        if profile in self._runs:
            return self._runs[profile]
        if not _PROFILE_RE.match(profile):
            raise ConfigError(f"--profile {profile!r}: a profile name has only letters, digits, '_', '-', '.'")
        flt = f"tags.`{N.TAG_PROFILE}` = '{profile}' AND attributes.status = 'FINISHED'"
        runs = [r for r in self.search(flt) if N.TAG_HASH in r.tags]
        self._runs[profile] = runs
        return runs

    def runs_tagged(self, experiment: str, tag: str, value: str) -> list[RunRecord]:
        """Runs of one experiment (by name) whose tag has this value (tune's parent runs)."""
        if not self.exists():
            return []
        from mlflow.exceptions import MlflowException

        try:
            exp = self.client.get_experiment_by_name(experiment)
        except (MlflowException, OSError) as exc:
            raise self._error(exc, f"read experiment {experiment}") from None
        if exp is None:
            return []
        return self.search(f"tags.`{tag}` = '{value}'", [exp.experiment_id])

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        from mlflow.exceptions import MlflowException

        try:
            return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]
        except (MlflowException, OSError) as exc:
            raise self._error(exc, f"read metric {key} of run {run_id}") from None

    def artifact(self, run_id: str, path: str, dst: Path) -> Optional[Path]:
        """Download one artifact file; None when the run has no such artifact."""
        from mlflow.exceptions import MlflowException

        dst.mkdir(parents=True, exist_ok=True)
        try:
            local = self.client.download_artifacts(run_id, path, str(dst))
        except (MlflowException, OSError):
            return None
        p = Path(local)
        return p if p.is_file() else None

    def logged_config(self, run_id: str) -> Optional[dict]:
        """The run's config.json ({"spec": summary, "config": plain config}); None if absent."""
        if run_id not in self._configs:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="benchmark-store-")
            local = self.artifact(run_id, N.CONFIG_FILE, Path(self._tmp.name) / run_id)
            data: Optional[dict] = None
            if local is not None:
                try:
                    data = json.loads(local.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    data = None
            self._configs[run_id] = data if isinstance(data, dict) else None
        return self._configs[run_id]

    def legacy_cells(self, run_id: str) -> list[tuple]:
        """Cells of a run logged before the cells tag existed, from its config.json
        (source and metric None: the report completes them from the recipe)."""
        data = self.logged_config(run_id) or {}
        cells = (data.get("spec") or {}).get("cells") or []
        return [cell_key(c) for c in cells
                if isinstance(c, dict) and all(k in c for k in ("paper", "table", "row", "column"))]
