"""Table files: the papers' printed numbers and what each column measures.

Format: tables/README.md. Loaded by the planner (which cells a run fills) and by
the report (paper vs reproduced).
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.config import DATASETS
from benchmark.errors import ConfigError
from benchmark.recipes.yamlio import item_mapping, load_yaml

DATASET_NAMES = {
    "cub200": "CUB-200-2011",
    "cars196": "Cars-196",
    "sop": "SOP",
    "inshop": "In-Shop",
}
STAT_METRICS = ("params_1e7", "gflops")
ARTIFACT_METRICS = ("pair_cosine_histogram", "attention_masks")
_METRIC = re.compile(r"^(recall@[1-9][0-9]*|map@r)$")  # percentages, in [0, 100]


@dataclass
class Column:
    id: str
    header: str
    dataset: str
    metric: str
    source: str
    group: Optional[str] = None
    cropped: bool = False

    def attr(self, name: str) -> Any:
        return getattr(self, name, None)

    @property
    def is_stat(self) -> bool:
        return self.metric in STAT_METRICS

    @property
    def is_artifact(self) -> bool:
        return self.metric in ARTIFACT_METRICS


@dataclass
class Row:
    name: str
    values: list[Optional[float]]
    stds: Optional[list[Optional[float]]] = None
    cited: bool = False
    labels: dict[str, Any] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    paper: str
    id: str
    kind: str
    title: str
    caption: str
    columns: list[Column]
    rows: list[Row]
    path: Path
    row_labels: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.paper}/{self.id}"

    def row(self, name: str) -> Row:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(name)

    def select_columns(self, where: dict[str, Any] | None, where_label: str) -> list[Column]:
        """Columns whose attributes match ``where`` (values: glob or list of globs)."""
        if not where:
            return list(self.columns)
        out = []
        for col in self.columns:
            ok = True
            for key, want in where.items():
                if key not in Column.__dataclass_fields__:
                    raise ConfigError(f"{where_label}.{key}: not a column attribute "
                                      f"(use one of {', '.join(Column.__dataclass_fields__)})")
                have = col.attr(key)
                wants = want if isinstance(want, list) else [want]
                if not any(_match(have, w) for w in wants):
                    ok = False
                    break
            if ok:
                out.append(col)
        if not out:
            raise ConfigError(f"{where_label}: matches no column of {self.path.name}")
        return out


def _match(have: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(have, str):
        return fnmatch.fnmatchcase(have, want)
    return have == want


_COLUMN_KEYS = {"id", "header", "dataset", "metric", "source", "group", "cropped"}
_ROW_KEYS = {"name", "values", "stds", "cited", "labels", "attrs"}
_TABLE_KEYS = {"paper", "id", "kind", "title", "caption", "columns", "rows", "row_labels", "plot"}


def load_table(path: Path) -> Table:
    data = load_yaml(path)
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    for key in data:
        if key not in _TABLE_KEYS:
            raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(sorted(_TABLE_KEYS))})")
    for key in ("paper", "id", "kind", "columns", "rows"):
        if key not in data:
            raise ConfigError(f"{where}: {key}: missing")
    if data["kind"] not in ("table", "figure"):
        raise ConfigError(f"{where}: kind: expected table or figure, got {data['kind']!r}")
    for key, kind in (("columns", list), ("rows", list), ("plot", dict)):
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise ConfigError(f"{where}: {key}: expected a {'list' if kind is list else 'mapping'}, "
                              f"got {type(data[key]).__name__}")
    columns = []
    for i, c in enumerate(data["columns"] or []):
        cw = f"{where}: columns[{i}]"
        item_mapping(c, cw, _COLUMN_KEYS)
        for key in ("id", "dataset", "metric", "source"):
            if key not in c:
                raise ConfigError(f"{cw}.{key}: missing")
        if c["dataset"] not in DATASETS:
            raise ConfigError(f"{cw}.dataset: expected one of {', '.join(DATASETS)}, got {c['dataset']!r}")
        metric = str(c["metric"])
        if not (_METRIC.match(metric) or metric in STAT_METRICS or metric in ARTIFACT_METRICS):
            known = ", ".join(("recall@K", "map@r") + STAT_METRICS + ARTIFACT_METRICS)
            raise ConfigError(f"{cw}.metric: unknown metric {metric!r} (known: {known})")
        columns.append(Column(
            id=str(c["id"]), header=str(c.get("header", c["id"])), dataset=c["dataset"],
            metric=metric, source=str(c["source"]), group=None if c.get("group") is None else str(c["group"]),
            cropped=_bool(c.get("cropped", False), f"{cw}.cropped"),
        ))
    ids = [c.id for c in columns]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{where}: columns: duplicate column ids")
    rows = []
    for i, r in enumerate(data["rows"] or []):
        rw = f"{where}: rows[{i}]"
        if not isinstance(r, dict) or "name" not in r:
            raise ConfigError(f"{rw}.name: missing")
        unknown = set(r) - _ROW_KEYS
        if unknown:
            raise ConfigError(f"{rw}.{sorted(unknown)[0]}: unknown key")
        values = r.get("values")
        if values is None:
            values = [None] * len(columns)
        stds = r.get("stds")
        for key, vals in (("values", values), ("stds", stds)):
            if vals is None:
                continue
            if not isinstance(vals, list) or len(vals) != len(columns):
                n = len(vals) if isinstance(vals, list) else "not a list of"
                raise ConfigError(f"{rw}.{key}: {n} values for {len(columns)} columns")
            bad = [v for v in vals if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))]
            if bad:
                raise ConfigError(f"{rw}.{key}: {bad[0]!r} is not a number (null where the paper prints none)")
            for col, v in zip(columns, vals):
                if v is None:
                    continue
                if not math.isfinite(v):
                    raise ConfigError(f"{rw}.{key}: {v!r} in column {col.id} is not a finite number")
                top = 100.0 if key == "values" and _METRIC.match(col.metric) else math.inf
                if not 0 <= v <= top:
                    raise ConfigError(f"{rw}.{key}: {v!r} in column {col.id} ({col.metric}) is outside "
                                      f"[0, {top:g}]")
        for key in ("labels", "attrs"):
            if not isinstance(r.get(key) or {}, dict):
                raise ConfigError(f"{rw}.{key}: expected a mapping")
        rows.append(Row(
            name=str(r["name"]), values=[None if v is None else float(v) for v in values],
            stds=None if stds is None else [None if v is None else float(v) for v in stds],
            cited=_bool(r.get("cited", False), f"{rw}.cited"), labels=dict(r.get("labels") or {}),
            attrs=dict(r.get("attrs") or {}),
        ))
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: rows: duplicate row names")
    return Table(
        paper=str(data["paper"]), id=str(data["id"]), kind=data["kind"],
        title=str(data.get("title", "")), caption=str(data.get("caption", "")),
        columns=columns, rows=rows, path=path,
        row_labels=_str_list(data.get("row_labels"), f"{where}: row_labels"), plot=dict(data.get("plot") or {}),
    )


def _bool(value: Any, where: str) -> bool:
    """true/false, strictly: the string "false" is not read as true."""
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of names")
    return [str(v) for v in value]


def load_dataset_sizes(path: Path) -> dict[str, dict[str, dict[str, dict[str, Optional[int]]]]]:
    """tables/datasets.yaml: dataset -> split -> paper -> {classes, images} as the
    papers state them (None where a paper states nothing)."""
    data = load_yaml(path)
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise ConfigError(f"{where}: expected a mapping with 'datasets'")
    out: dict = {}
    for ds, splits in data["datasets"].items():
        if ds not in DATASETS or not isinstance(splits, dict):
            raise ConfigError(f"{where}: datasets.{ds}: unknown dataset or not a mapping")
        for split, papers in splits.items():
            if not isinstance(papers, dict):
                raise ConfigError(f"{where}: datasets.{ds}.{split}: expected a mapping of paper -> counts")
            for paper, counts in papers.items():
                if not isinstance(counts, dict) or set(counts) - {"classes", "images"}:
                    raise ConfigError(f"{where}: datasets.{ds}.{split}.{paper}: expected {{classes, images}}")
                for k, v in counts.items():
                    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                        raise ConfigError(f"{where}: datasets.{ds}.{split}.{paper}.{k}: expected a count, got {v!r}")
                out.setdefault(ds, {}).setdefault(split, {})[str(paper)] = dict(counts)
    return out
