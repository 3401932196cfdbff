"""Paper numbers joined with reproduced numbers from MLflow.

One row of the collected DataFrame is one cell of a paper table: the printed
number (``paper_value``) beside the mean, sample std and count over seeds of
the finished MLflow runs whose ``bench.group`` tag is the group hash of the run
that fills the cell (``reproduced``, ``std``, ``n``). Runs are matched by tags
only (``bench.group``, ``bench.profile``, status FINISHED), so a report never
depends on which experiment, executor or machine produced a run.

Kinds of cells (column ``kind``):
  run       filled by a training run's ``final/<source>/<metric>``
  stat      model statistics (#params, FLOPs) computed from the paper-profile model
  artifact  figure-only data read from a run artifact (histograms, masks)
  cited     another paper's number: printed as is, never reproduced
  norecipe  the table has no recipe yet: paper numbers only
"""

from __future__ import annotations

import math
import os
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import pandas as pd

from benchmark.errors import ConfigError, UserError
from benchmark.recipes import PAPER_PROFILE, Catalog, Context, Recipe, Resolver, expand, row_runs
from benchmark.spec import config_hash
from benchmark.tables import DATASET_NAMES, Column, Table, metric_key

# Artifact (relative to the run's artifact root) holding a figure-only metric's data.
ARTIFACTS = {
    "pair_cosine_histogram": "figures/pair_cosine.npz",
    "attention_masks": "figures/attention_masks.npz",
}

SELECTION_TEXT = {
    "last": "the last evaluation (a fixed training budget)",
    "best_test": "the evaluation with the best Recall@1 on the test set (the paper's protocol; selection on test data)",
    "best_val": "the evaluation with the best Recall@1 on held-out training classes (clean selection)",
}

CELL_COLUMNS = [
    "paper", "table", "row", "column", "kind", "cited", "dataset", "metric", "source",
    "paper_value", "paper_std", "profile", "selection", "group", "run_ids", "seeds",
    "reproduced", "std", "n", "clean", "clean_std", "clean_n", "spread", "clean_spread", "note",
]

# A column whose source is the mean over an ensemble's learners: the paper's
# "±" there is the standard deviation over the learners (not over seeds), which
# the trainer logs under this source.
SPREAD_SOURCE = {"learners_mean": "learners_std"}

_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


# ---------------------------------------------------------------------------
# Which tables
# ---------------------------------------------------------------------------


@dataclass
class Selected:
    """A table of the selection, with the recipe that runs it (None: no recipe yet)."""

    table: Table
    recipe: Optional[Recipe]


def _recipe_for(catalog: Catalog, key: str) -> Optional[Recipe]:
    names = catalog.recipe_names()
    if key in names:
        recipe = catalog.recipe(key)
        if recipe.table_key == key:
            return recipe
    for name in names:
        if name == key:
            continue
        recipe = catalog.recipe(name)
        if recipe.table_key == key:
            return recipe
    return None


def select_tables(catalog: Catalog, selection: str = "all") -> list[Selected]:
    """Tables of a selection: 'all', a paper ('dm2'), a table or recipe ('dm2/table1'), or a comma list.

    Unlike :meth:`Catalog.select` this includes tables that have no recipe yet (their
    paper numbers are still reported).
    """
    keys: list[str] = []
    all_tables = catalog.tables()
    for part in [s.strip() for s in str(selection).split(",") if s.strip()]:
        if part == "all":
            found = [t.key for t in all_tables]
        elif "/" in part:
            if (catalog.tables_dir / f"{part}.yaml").exists():
                found = [part]
            elif part in catalog.recipe_names() and catalog.recipe(part).table_key:
                found = [catalog.recipe(part).table_key]
            else:
                known = ", ".join(t.key for t in all_tables)
                raise ConfigError(f"{part}: no such table (no file {catalog.tables_dir / (part + '.yaml')}); known: {known}")
        else:
            found = [t.key for t in all_tables if t.paper == part]
            if not found:
                papers = ", ".join(sorted({t.paper for t in all_tables}))
                raise ConfigError(f"{part}: no such paper or table (known papers: {papers})")
        for key in found:
            if key not in keys:
                keys.append(key)
    if not keys:
        raise ConfigError(f"'{selection}': selects no table")
    return [Selected(catalog.table(k), _recipe_for(catalog, k)) for k in keys]


def paper_cells(catalog: Catalog, selection: str = "all") -> list[dict]:
    """Every cell of every selected table as printed: {paper, table, row, column, value, std, cited}.

    ``value`` is the printed number or None ("-" or a figure); cited rows included.
    """
    out = []
    for sel in select_tables(catalog, selection):
        t = sel.table
        for row in t.rows:
            for i, col in enumerate(t.columns):
                out.append({
                    "paper": t.paper, "table": t.id, "row": row.name, "column": col.id,
                    "value": row.values[i],
                    "std": row.stds[i] if row.stds is not None else None,
                    "cited": row.cited,
                })
    return out


# ---------------------------------------------------------------------------
# MLflow access
# ---------------------------------------------------------------------------


def default_tracking_uri() -> str:
    """MLFLOW_TRACKING_URI, else sqlite:///<BENCHMARK_HOME>/mlflow.db (the runner's rule;
    unlike benchmark.runner.home.tracking_uri this creates no folder)."""
    from benchmark.runner.home import benchmark_home

    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{benchmark_home() / 'mlflow.db'}"


@dataclass
class RunRecord:
    run_id: str
    group: str
    hash: str
    seed: Optional[int]
    end_time: int
    metrics: dict[str, float]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class RunStore:
    """Read-only view of an MLflow tracking store (imports mlflow only when used)."""

    def __init__(self, tracking_uri: Optional[str] = None):
        self.uri = tracking_uri or default_tracking_uri()
        self._client = None
        self._runs: dict[str, list[RunRecord]] = {}

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
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _error(self, exc: BaseException, what: str) -> UserError:
        return UserError(f"tracking URI {self.uri}: cannot {what} ({_first_line(exc)})")

    def finished_runs(self, profile: str) -> list[RunRecord]:
        """Every active FINISHED run tagged with this profile, in every experiment.

        MLflow's search has no IN for tags, so one query per profile fetches all its
        runs and the caller filters by group; that is one round trip for a whole report.
        """
        if profile in self._runs:
            return self._runs[profile]
        if not _PROFILE_RE.match(profile):
            raise ConfigError(f"--profile {profile!r}: a profile name has only letters, digits, '_', '-', '.'")
        if not self.exists():
            self._runs[profile] = []
            return []
        from mlflow.entities import ViewType
        from mlflow.exceptions import MlflowException

        out: list[RunRecord] = []
        try:
            exp_ids: list[str] = []
            token = None
            while True:
                page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000,
                                                      page_token=token)
                exp_ids += [e.experiment_id for e in page]
                token = page.token
                if not token:
                    break
            flt = f"tags.`bench.profile` = '{profile}' AND attributes.status = 'FINISHED'"
            for start in range(0, len(exp_ids), 100):
                token = None
                while True:
                    page = self.client.search_runs(exp_ids[start:start + 100], flt,
                                                   run_view_type=ViewType.ACTIVE_ONLY,
                                                   max_results=5000, page_token=token)
                    for run in page:
                        tags = run.data.tags
                        if "bench.group" not in tags:
                            continue
                        seed = tags.get("bench.seed")
                        out.append(RunRecord(
                            run_id=run.info.run_id, group=tags["bench.group"],
                            hash=tags.get("bench.hash", run.info.run_id),
                            seed=int(seed) if seed not in (None, "") and str(seed).lstrip("-").isdigit() else None,
                            end_time=run.info.end_time or 0, metrics=dict(run.data.metrics),
                        ))
                    token = page.token
                    if not token:
                        break
        except (MlflowException, OSError) as exc:
            raise self._error(exc, "search runs") from None
        self._runs[profile] = out
        return out

    def runs_by_group(self, profile: str) -> dict[str, list[RunRecord]]:
        """Group hash -> one run per seed (the latest finished run of each run hash)."""
        latest: dict[tuple[str, str], RunRecord] = {}
        for rec in self.finished_runs(profile):
            key = (rec.group, rec.hash)
            if key not in latest or rec.end_time > latest[key].end_time:
                latest[key] = rec
        out: dict[str, list[RunRecord]] = {}
        for (group, _), rec in latest.items():
            out.setdefault(group, []).append(rec)
        for recs in out.values():
            recs.sort(key=lambda r: (r.seed if r.seed is not None else 1 << 30, r.run_id))
        return out

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


# ---------------------------------------------------------------------------
# Collection
# ---------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[Optional[float], Optional[float], int]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return None, None, 0
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if n >= 2 else None  # sample std (ddof 1)
    return mean, std, n


_stats_cache: dict[str, Optional[dict]] = {}


def _model_stats(cfg) -> tuple[Optional[dict], str]:
    """#params / FLOPs of the paper-profile model (benchmark.stats, imported lazily)."""
    key = config_hash(cfg)
    if key in _stats_cache:
        return _stats_cache[key], ""
    try:
        from benchmark.stats import config_model_stats
    except ImportError:
        return None, "model statistics unavailable (benchmark.stats is missing)"
    try:
        stats = config_model_stats(cfg)
    except UserError as exc:
        return None, f"model statistics unavailable ({_first_line(exc)})"
    _stats_cache[key] = stats
    return stats, ""


def _base_cell(t: Table, row, i: int, col: Column, profile: str, kind: str) -> dict:
    return {
        "paper": t.paper, "table": t.id, "row": row.name, "column": col.id, "kind": kind,
        "cited": row.cited, "dataset": col.dataset, "metric": col.metric, "source": col.source,
        "paper_value": row.values[i], "paper_std": row.stds[i] if row.stds is not None else None,
        "profile": profile, "selection": None, "group": None, "run_ids": [], "seeds": [],
        "reproduced": None, "std": None, "n": 0, "clean": None, "clean_std": None, "clean_n": 0,
        "spread": None, "clean_spread": None, "note": "",
    }


def _learners(cfg) -> int:
    """Learners whose spread a learners_mean cell reports (ABE's M; 0 for other methods)."""
    return cfg.abe.learners if cfg.abe is not None else 0


@dataclass
class Collected:
    df: pd.DataFrame
    configs: dict[str, list] = field(default_factory=dict)  # table key -> configs of its runs


def _collect(catalog: Catalog, selected: list[Selected], profile: str, store: RunStore) -> Collected:
    recipes = [s.recipe for s in selected if s.recipe is not None]
    keys = {s.table.key for s in selected}
    # (table key, row, column) -> (spec, logged source)
    fill: dict[tuple[str, str, str], tuple[Any, str]] = {}
    configs: dict[str, list] = {}
    if recipes:
        for spec in expand(catalog, recipes, Context(profile=profile, seeds=[0])):
            for cell in spec.cells:
                k = (f"{cell.paper}/{cell.table}", cell.row, cell.column)
                if k[0] in keys:
                    fill[k] = (spec, cell.source)
                    table_cfgs = configs.setdefault(k[0], [])
                    if not any(c is spec.config for c in table_cfgs):
                        table_cfgs.append(spec.config)
    # model statistics come from the paper-profile model whatever the report's profile
    stat_cfg: dict[tuple[str, str, str], Any] = {}
    stat_recipes = [r for r in recipes if any(c.is_stat for c in catalog.table(r.table_key).columns)]
    if stat_recipes:
        ctx = Context(profile=PAPER_PROFILE, seeds=[0])
        resolver = Resolver(catalog, ctx)
        for recipe in stat_recipes:
            for rr in row_runs(catalog, recipe, ctx):
                cols = [c for c in rr.columns if c.is_stat]
                if not cols:
                    continue
                cfg = resolver.resolve(recipe, rr.binding, rr.dataset, rr.cropped, 0)
                for c in cols:
                    stat_cfg[(rr.table.key, rr.row, c.id)] = cfg

    by_group = store.runs_by_group(profile) if fill else {}
    cells = []
    for sel in selected:
        t = sel.table
        for row in t.rows:
            for i, col in enumerate(t.columns):
                k = (t.key, row.name, col.id)
                if row.cited:
                    cells.append(_base_cell(t, row, i, col, profile, "cited"))
                    continue
                if sel.recipe is None:
                    cell = _base_cell(t, row, i, col, profile, "norecipe")
                    cell["note"] = "no recipe for this table"
                    cells.append(cell)
                    continue
                if col.is_stat:
                    cell = _base_cell(t, row, i, col, profile, "stat")
                    cell["selection"] = "computed"
                    cfg = stat_cfg.get(k)
                    if cfg is not None:
                        stats, note = _model_stats(cfg)
                        cell["note"] = note
                        if stats is not None and stats.get(col.metric) is not None:
                            cell["reproduced"] = float(stats[col.metric])
                            cell["n"] = 1
                    cells.append(cell)
                    continue
                kind = "artifact" if col.is_artifact else "run"
                cell = _base_cell(t, row, i, col, profile, kind)
                if k not in fill:
                    cell["note"] = "no run binds this cell"
                    cells.append(cell)
                    continue
                spec, source = fill[k]
                cell["source"] = source
                cell["selection"] = spec.config.selection
                cell["group"] = spec.group
                runs = by_group.get(spec.group, [])
                cell["run_ids"] = [r.run_id for r in runs]
                cell["seeds"] = [r.seed for r in runs]
                if kind == "artifact":
                    cell["n"] = len(runs)
                else:
                    mkey = metric_key(col.metric)
                    cell["reproduced"], cell["std"], cell["n"] = _mean_std(
                        [r.metrics.get(f"final/{source}/{mkey}") for r in runs])
                    if spec.config.selection != "last":  # otherwise the same numbers
                        cell["clean"], cell["clean_std"], cell["clean_n"] = _mean_std(
                            [r.metrics.get(f"final_last/{source}/{mkey}") for r in runs])
                    spread = SPREAD_SOURCE.get(source)
                    if spread and _learners(spec.config) > 1:  # the paper's ±: over learners, mean over seeds
                        cell["spread"] = _mean_std([r.metrics.get(f"final/{spread}/{mkey}") for r in runs])[0]
                        if spec.config.selection != "last":
                            cell["clean_spread"] = _mean_std(
                                [r.metrics.get(f"final_last/{spread}/{mkey}") for r in runs])[0]
                    if runs and cell["n"] == 0:
                        cell["note"] = f"runs have no metric final/{source}/{mkey}"
                cells.append(cell)
    df = pd.DataFrame(cells, columns=CELL_COLUMNS)
    df.attrs["tracking_uri"] = store.uri
    df.attrs["profile"] = profile
    return Collected(df, configs)


def collect(catalog: Catalog, selection: str, profile: str, tracking_uri: Optional[str] = None,
            *, store: Optional[RunStore] = None) -> pd.DataFrame:
    """Paper vs reproduced, one DataFrame row per cell of every selected table.

    Columns: see CELL_COLUMNS. ``reproduced``/``std``/``n``: mean, sample std (None
    for n = 1) and number of seeds of ``final/<source>/<metric>``; ``clean*``: the
    same for ``final_last/...`` (the fixed-budget protocol beside best-on-test).
    """
    store = store or RunStore(tracking_uri)
    return _collect(catalog, select_tables(catalog, selection), profile, store).df


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    return value


def records(df: pd.DataFrame) -> list[dict]:
    """DataFrame rows as plain dicts (NaN -> None, numpy scalars -> Python)."""
    out = []
    for rec in df.to_dict(orient="records"):
        out.append({k: (_plain(v) if not isinstance(v, list) else list(v)) for k, v in rec.items()})
    return out


REPORT_FIELDS = ["paper", "table", "row", "column", "cited", "paper_value", "reproduced", "std", "n",
                 "profile", "selection", "clean", "clean_std", "clean_n", "spread", "kind", "note"]


def report_cells(catalog: Catalog, selection: str, profile: str, tracking_uri: Optional[str] = None) -> list[dict]:
    """Every cell as a plain dict for `report --format json`.

    Keys: paper, table, row, column, cited, paper_value, reproduced, std, n, profile,
    plus selection (protocol), clean/clean_std/clean_n (final_last), spread (for a
    mean over an ensemble's learners: their standard deviation, the paper's ±,
    averaged over seeds), kind and note.
    """
    df = collect(catalog, selection, profile, tracking_uri)
    return [{k: rec[k] for k in REPORT_FIELDS} for rec in records(df)]


def dataset_title(col: Column) -> str:
    return DATASET_NAMES.get(col.dataset, col.dataset) + (" (cropped)" if col.cropped else "")


def iter_cells(df: pd.DataFrame, table: Table) -> Iterable[dict]:
    return records(df[(df["paper"] == table.paper) & (df["table"] == table.id)])
