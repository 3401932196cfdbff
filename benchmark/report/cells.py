"""Paper numbers joined with what the runs logged.

A table cell is filled by the finished runs whose ``bench.cells`` tag names it
(the cells the runner recorded for each run: the command that made or reused
it selected it for them). The report never re-derives which run fills a cell
from today's recipes; it only asks the recipe which config is the row's own:

- runs of the row's own config (its series: the config up to the run seed,
  :func:`benchmark.recipes.series_hash`) give the cell's reproduced mean, sample
  std and count over seeds (``reproduced``, ``std``, ``n``), ``variant`` None;
- runs of any other config that logged the cell (made with ``--set``,
  ``--overrides``, a tuned ``best.yaml``, another synthetic dataset, or an
  earlier version of the recipe) are a labelled variant of the row, one record
  per config, ``variant`` naming the changed keys (``cohort.lambda_mutual=5``);
  they are never averaged into the row.

One DataFrame row per (cell, variant). Kinds of cells (column ``kind``):
  run       filled by a training run's ``final/<source>/<metric>``
  stat      model statistics (#params, FLOPs) computed from the paper-profile model;
            ``backbone`` names its architecture. A variant of the row whose runs
            changed the model (e.g. ``--set abe.arch=bvlc_googlenet``) gets its own
            stat record: the paper-profile model with the variant's model changes
            (a profile's arch_map undone: tiny_bvlc_googlenet -> bvlc_googlenet)
  artifact  figure-only data read from a run artifact (histograms, masks)
  cited     another paper's number: printed as is; where the recipe re-runs the
            row under this paper's protocol (``rerun: true``), ``reproduced`` is the
            re-run's and ``paper_value`` stays the cited number
  norecipe  the table has no recipe yet: paper numbers only
"""

from __future__ import annotations

import math
import statistics
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import pandas as pd

from benchmark import names as N
from benchmark.config import load_config
from benchmark.config.models import reported_arch
from benchmark.errors import ConfigError, UserError
from benchmark.recipes import (
    PAPER_PROFILE, Catalog, Context, Recipe, Resolver, Table, cell_bindings, config_hash, select_tables,
    series_hash, variant_text,
)
from benchmark.runner.records import RunRecord
from benchmark.runner.store import RunStore

from .modelstats import arch_map, stat_variants
from .stats import t_interval

SELECTION_TEXT = {
    "last": "the last evaluation (a fixed training budget)",
    "best_test": "the evaluation with the best Recall@1 on the test set (the paper's protocol; selection on test data)",
    "best_val": "the evaluation with the best Recall@1 on held-out training classes (clean selection)",
}

CELL_COLUMNS = [
    "paper", "table", "row", "column", "kind", "cited", "dataset", "metric", "source", "variant",
    "paper_value", "paper_std", "profile", "selection", "series", "run_ids", "seeds", "values", "clean_values",
    "reproduced", "std", "n", "ci_low", "ci_high", "paper_in_ci", "clean", "clean_std", "clean_n", "spread",
    "clean_spread", "backbone", "note",
]
REPORT_FIELDS = ["paper", "table", "row", "column", "variant", "cited", "paper_value", "reproduced", "std", "n",
                 "ci_low", "ci_high", "paper_in_ci", "profile", "selection", "clean", "clean_std", "clean_n",
                 "spread", "kind", "backbone", "note"]

# A column whose source is the mean over an ensemble's learners: the paper's
# "±" there is the standard deviation over the learners (not over seeds), which
# the trainer logs under this source.
SPREAD_SOURCE = {"learners_mean": "learners_std"}


@dataclass
class Selected:
    """A table of the selection, with the recipe that runs it (None: no recipe yet)."""

    table: Table
    recipe: Optional[Recipe]


def selected_tables(catalog: Catalog, selection: str = "all") -> list[Selected]:
    return [Selected(t, r) for t, r in select_tables(catalog, selection)]


def paper_cells(catalog: Catalog, selection: str = "all") -> list[dict]:
    """Every cell of every selected table as printed: {paper, table, row, column, value, std, cited}.

    ``value`` is the printed number or None ("-" or a figure); cited rows included.
    """
    out = []
    for sel in selected_tables(catalog, selection):
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
# numbers
# ---------------------------------------------------------------------------


def mean_std(values: Iterable[Optional[float]]) -> tuple[Optional[float], Optional[float], int]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(vals)
    if n == 0:
        return None, None, 0
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if n >= 2 else None  # sample std (ddof 1)
    return mean, std, n


_stats_cache: dict[str, Optional[dict]] = {}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _model_stats(cfg) -> tuple[Optional[dict], str]:
    """#params / FLOPs of the paper-profile model (benchmark.stats, imported lazily),
    with ``arch``: the backbone they were counted on."""
    key = config_hash(cfg)
    if key in _stats_cache:
        return _stats_cache[key], ""
    try:
        from benchmark.stats import config_model_stats
    except ImportError:
        return None, "model statistics unavailable (benchmark.stats is missing)"
    try:
        stats = {**config_model_stats(cfg), "arch": reported_arch(cfg)}
    except UserError as exc:
        return None, f"model statistics unavailable ({_first_line(exc)})"
    _stats_cache[key] = stats
    return stats, ""


def _base_cell(t: Table, row, i: int, col, profile: str, kind: str) -> dict:
    return {
        "paper": t.paper, "table": t.id, "row": row.name, "column": col.id, "kind": kind,
        "cited": row.cited, "dataset": col.dataset, "metric": col.metric, "source": col.source, "variant": None,
        "paper_value": row.values[i], "paper_std": row.stds[i] if row.stds is not None else None,
        "profile": profile, "selection": None, "series": None, "run_ids": [], "seeds": [], "values": [],
        "clean_values": [], "reproduced": None, "std": None, "n": 0, "ci_low": None, "ci_high": None,
        "paper_in_ci": None, "clean": None, "clean_std": None, "clean_n": 0,
        "spread": None, "clean_spread": None, "backbone": None, "note": "",
    }


def _learners(cfg) -> int:
    """Learners whose spread a learners_mean cell reports (ABE's M; 0 for other methods)."""
    return cfg.abe.learners if cfg is not None and cfg.abe is not None else 0


def _fill(cell: dict, runs: list[RunRecord], source: str, cfg) -> None:
    """Reproduced numbers of one cell from its runs (one per seed)."""
    metric = cell["metric"]
    cell["run_ids"] = [r.run_id for r in runs]
    cell["seeds"] = [r.seed for r in runs]
    cell["source"] = source
    cell["selection"] = cfg.selection if cfg is not None else None
    if cell["kind"] == "artifact":
        cell["n"] = len(runs)
        return
    key = N.metric_key(N.FINAL, source, metric)
    cell["values"] = [r.metrics.get(key) for r in runs]
    cell["reproduced"], cell["std"], cell["n"] = mean_std(cell["values"])
    iv = t_interval(cell["values"])
    cell["ci_low"], cell["ci_high"] = iv.low, iv.high
    if iv.low is not None and cell["paper_value"] is not None:
        cell["paper_in_ci"] = bool(iv.low <= cell["paper_value"] <= iv.high)
    best = cfg is not None and cfg.selection != "last"
    if best:  # otherwise the same numbers
        cell["clean_values"] = [r.metrics.get(N.metric_key(N.FINAL_LAST, source, metric)) for r in runs]
        cell["clean"], cell["clean_std"], cell["clean_n"] = mean_std(cell["clean_values"])
    spread = SPREAD_SOURCE.get(source)
    if spread and _learners(cfg) > 1:  # the paper's ±: over learners, mean over seeds
        cell["spread"] = mean_std(r.metrics.get(N.metric_key(N.FINAL, spread, metric)) for r in runs)[0]
        if best:
            cell["clean_spread"] = mean_std(
                r.metrics.get(N.metric_key(N.FINAL_LAST, spread, metric)) for r in runs)[0]
    if runs and cell["n"] == 0:
        cell["note"] = f"runs have no metric {key}"


# ---------------------------------------------------------------------------
# what the store holds
# ---------------------------------------------------------------------------


@dataclass
class Logged:
    """A finished run as the report reads it: its record, series and config."""

    record: RunRecord
    series: Optional[str]
    config: Any = None  # TrainConfig from its config.json, loaded when needed


class StoreView:
    """The finished runs of one profile, indexed by the cells they logged."""

    def __init__(self, store: RunStore, profile: str, tables: set[str]):
        self.store = store
        self.cells: dict[tuple[str, str, str], list[tuple[Logged, Optional[str]]]] = {}
        self.skipped = 0
        latest: dict[str, RunRecord] = {}
        for rec in store.finished_runs(profile):  # the latest finished run of each hash
            if rec.hash not in latest or rec.end_time > latest[rec.hash].end_time:
                latest[rec.hash] = rec
        for rec in latest.values():
            cells = rec.cells()
            if cells is None:  # logged before runs carried a cells tag
                cells = store.legacy_cells(rec.run_id)
                if not cells:
                    self.skipped += 1
                    continue
            logged = Logged(rec, rec.series)
            mine: dict[tuple, Optional[str]] = {}
            for paper, table, row, column, source, _metric in cells:  # once per cell, a logged source first
                key = (f"{paper}/{table}", row, column)
                if key[0] in tables and mine.get(key) is None:
                    mine[key] = source
            for key, source in mine.items():
                self.cells.setdefault(key, []).append((logged, source))

    def config(self, logged: Logged):
        """The run's config (from its config.json), or None when it cannot be read."""
        if logged.config is None:
            data = (self.store.logged_config(logged.record.run_id) or {}).get("config")
            try:
                logged.config = load_config(data, f"run {logged.record.run_id}") if data is not None else False
            except ConfigError:
                logged.config = False  # a config of an older schema: shown, but not compared
        return logged.config or None

    def series(self, logged: Logged) -> str:
        """The run's series: its tag, else (a run logged before the tag existed) the
        series of its config.json, if today's schema reads that config as the very
        run it was (same hash); otherwise the run is its own series, a variant."""
        if logged.series is None:
            cfg = self.config(logged)
            if cfg is not None and config_hash(cfg) == logged.record.hash:
                logged.series = series_hash(cfg)
            else:
                logged.series = f"run:{logged.record.run_id}"
        return logged.series


# ---------------------------------------------------------------------------
# collection
# ---------------------------------------------------------------------------


@dataclass
class Collected:
    df: pd.DataFrame
    configs: dict[str, list] = field(default_factory=dict)  # table key -> the rows' own configs
    skipped: int = 0  # finished runs with no record of the cells they fill
    runs: dict[str, RunRecord] = field(default_factory=dict)  # run id -> the run (its metrics, tags)


def _resolver_cache(catalog: Catalog, profile: str):
    resolver = Resolver(catalog, Context(profile=profile, seeds=[0]))
    cache: dict[tuple, Any] = {}

    def own(cb) -> Any:
        key = (cb.recipe.name, cb.binding.label, cb.dataset, cb.cropped)
        if key not in cache:
            cache[key] = resolver.resolve(cb.recipe, cb.binding, cb.dataset, cb.cropped, 0)
        return cache[key]

    return own


def collect_tables(catalog: Catalog, selected: list[Selected], profile: str, store: RunStore) -> Collected:
    """Every cell of the selected tables, with the variants the store holds for it."""
    view = StoreView(store, profile, {s.table.key for s in selected})
    own_cfg = _resolver_cache(catalog, profile)
    paper_cfg = _resolver_cache(catalog, PAPER_PROFILE)  # model statistics: the paper-size model
    cells: list[dict] = []
    configs: dict[str, list] = {}
    stat_cells: list[tuple[dict, Any, Any]] = []  # (own stat record, binding, paper-profile config)
    run_variants: dict[tuple, dict] = {}  # (paper, table, row) -> variant label -> its config (or None)
    for sel in selected:
        t = sel.table
        bindings = cell_bindings(catalog, sel.recipe) if sel.recipe is not None else {}
        table_cfgs = configs.setdefault(t.key, [])
        for row in t.rows:
            for i, col in enumerate(t.columns):
                if row.cited:
                    cb = bindings.get((row.name, col.id))
                    cell = _base_cell(t, row, i, col, profile, "cited")
                    if cb is None or col.is_stat:
                        cells.append(cell)
                        continue
                    # a cited row re-run under this paper's protocol: the cell stays cited
                    # (paper_value is the cited number), `reproduced` is the re-run's
                    base = own_cfg(cb)
                    if not any(c is base for c in table_cfgs):
                        table_cfgs.append(base)
                    cells += _cell_records(cell, cb, base, view.cells.get((t.key, row.name, col.id), []), view)
                    continue
                if sel.recipe is None:
                    cell = _base_cell(t, row, i, col, profile, "norecipe")
                    cell["note"] = "no recipe for this table"
                    cells.append(cell)
                    continue
                cb = bindings.get((row.name, col.id))
                if col.is_stat:
                    cell = _base_cell(t, row, i, col, profile, "stat")
                    cell["selection"] = "computed"
                    if cb is not None:
                        stats, note = _model_stats(paper_cfg(cb))
                        cell["note"] = note
                        if stats is not None:
                            cell["backbone"] = stats["arch"]
                            if stats.get(col.metric) is not None:
                                cell["reproduced"], cell["n"] = float(stats[col.metric]), 1
                        stat_cells.append((cell, cb, paper_cfg(cb)))
                    cells.append(cell)
                    continue
                kind = "artifact" if col.is_artifact else "run"
                cell = _base_cell(t, row, i, col, profile, kind)
                if cb is None:
                    cell["note"] = "no run binds this cell"
                    cells.append(cell)
                    continue
                base = own_cfg(cb)
                if not any(c is base for c in table_cfgs):
                    table_cfgs.append(base)
                records_ = _cell_records(cell, cb, base, view.cells.get((t.key, row.name, col.id), []), view)
                for rec in records_[1:]:
                    run_variants.setdefault((t.paper, t.id, row.name), {})[rec["variant"]] = rec.pop("_config")
                cells += records_
    cells += stat_variants(stat_cells, run_variants, lambda recipe: arch_map(recipe, profile), own_cfg, _model_stats)
    df = pd.DataFrame(cells, columns=CELL_COLUMNS)
    df.attrs["tracking_uri"] = store.uri
    df.attrs["profile"] = profile
    if view.skipped:
        print(f"warning: {view.skipped} finished run(s) of profile {profile} record no table cells "
              f"(no {N.TAG_CELLS} tag, no {N.CONFIG_FILE}): not shown", file=sys.stderr)
    runs = {logged.record.run_id: logged.record for entries in view.cells.values() for logged, _ in entries}
    return Collected(df, configs, view.skipped, runs)


def _cell_records(cell: dict, cb, base, entries: list, view: StoreView) -> list[dict]:
    """The row's own record for a cell, then one record per variant config."""
    own_series = series_hash(base)
    groups: dict[str, list[tuple[Logged, Optional[str]]]] = {}
    for logged, source in entries:
        groups.setdefault(view.series(logged), []).append((logged, source))
    own = dict(cell, series=own_series)
    out = [own]
    mine = groups.pop(own_series, [])
    _fill(own, _by_seed(mine), next((s for _, s in mine if s), cb.source), base)
    variants = []
    for series, members in groups.items():
        first = members[0][0]
        cfg = view.config(first)
        label = variant_text(base, cfg) if cfg is not None else None
        rec = dict(cell, series=series, variant=label or f"another config (run {first.record.run_id[:8]})")
        _fill(rec, _by_seed(members), members[0][1] or cb.source, cfg)
        rec["_config"] = cfg  # read by the row's stat cells, dropped before the DataFrame
        variants.append(rec)
    return out + sorted(variants, key=lambda r: r["variant"])


def _by_seed(members: list) -> list[RunRecord]:
    runs = [logged.record for logged, _ in members]
    return sorted(runs, key=lambda r: (r.seed if r.seed is not None else 1 << 30, r.run_id))


def collect(catalog: Catalog, selection: str, profile: str, tracking_uri: Optional[str] = None,
            *, store: Optional[RunStore] = None) -> pd.DataFrame:
    """Paper vs reproduced, one DataFrame row per (cell, variant) of every selected table.

    Columns: see CELL_COLUMNS. ``reproduced``/``std``/``n``: mean, sample std (None
    for n = 1) and number of seeds of ``final/<source>/<metric>``; ``clean*``: the
    same for ``final_last/...`` (the fixed-budget protocol beside best-on-test).
    """
    store = store or RunStore(tracking_uri)
    return collect_tables(catalog, selected_tables(catalog, selection), profile, store).df


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


def report_cells(catalog: Catalog, selection: str, profile: str, tracking_uri: Optional[str] = None) -> list[dict]:
    """Every cell as a plain dict for `report --format json`.

    Keys: paper, table, row, column, variant (None for the row's own runs, else the
    changed keys and values), cited, paper_value, reproduced, std, n, profile, plus
    selection (protocol), clean/clean_std/clean_n (final_last), spread (for a mean
    over an ensemble's learners: their standard deviation, the paper's ±, averaged
    over seeds), kind and note.
    """
    df = collect(catalog, selection, profile, tracking_uri)
    return [{k: rec[k] for k in REPORT_FIELDS} for rec in records(df)]


def iter_cells(df: pd.DataFrame, table: Table) -> list[dict]:
    return records(df[(df["paper"] == table.paper) & (df["table"] == table.id)])
