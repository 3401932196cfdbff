"""Claims files: what a paper's text concludes from its tables, as relations the
harness can test (``tables/<paper>/claims.yaml``; format: tables/README.md).

A claim names cells of one table file (``{row, column}``) and a relation:

- ``greater``: a > b (+ ``margin``, default 0);
- ``within``: |a - b| <= ``tol`` ("comparable", "on par", "similar");
- ``no_effect``: |a - b| <= ``tol`` (a switch that changes nothing);
- ``monotone``: ``cells`` increase in the order given;
- ``highest``: the first of ``cells`` is above every other one;
- ``ratio_at_most``: a / b <= ``tol`` (costs, e.g. seconds per iteration).

A cell is read as the table's metric of the runs that fill it, or with
``metric`` as another logged metric of those runs (``train/seconds_per_iteration``),
or for a histogram column with ``statistic`` (``self_mean``: mean cosine of
self pairs) from the runs' figure data. Cited rows enter as their printed
numbers. The evaluation lives in :mod:`benchmark.report.claims`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark.errors import ConfigError
from benchmark.recipes.yamlio import item_mapping, load_yaml

RELATIONS = ("greater", "within", "no_effect", "monotone", "highest", "ratio_at_most")
PAIRWISE = ("greater", "within", "no_effect", "ratio_at_most")
STATISTICS = ("self_mean", "positive_mean", "negative_mean")
CLAIMS_FILE = "claims.yaml"
_KEYS = {"id", "section", "source", "table", "relation", "a", "b", "cells", "tol", "margin", "metric", "statistic",
         "reading"}


@dataclass(frozen=True)
class CellRef:
    row: str
    column: str

    def as_dict(self) -> dict:
        return {"row": self.row, "column": self.column}


@dataclass
class Claim:
    paper: str
    id: str
    section: str
    source: str  # the sentence, quoted
    table: str  # table key, e.g. dm2/table1
    relation: str
    cells: list[CellRef]  # pairwise relations: [a, b]
    tol: Optional[float] = None
    margin: float = 0.0
    metric: Optional[str] = None
    statistic: Optional[str] = None
    reading: str = ""
    path: Optional[Path] = field(default=None, repr=False)

    @property
    def dataset(self) -> str:
        return ""

    def text(self) -> str:
        """The relation in words, with the cells it compares."""
        names = [f"{c.row} [{c.column}]" for c in self.cells]
        what = f" of {self.statistic}" if self.statistic else (f" of {self.metric}" if self.metric else "")
        if self.relation == "greater":
            extra = f" + {self.margin:g}" if self.margin else ""
            return f"{names[0]} > {names[1]}{extra}{what}"
        if self.relation in ("within", "no_effect"):
            return f"|{names[0]} - {names[1]}| <= {self.tol:g}{what}"
        if self.relation == "ratio_at_most":
            return f"{names[0]} / {names[1]} <= {self.tol:g}{what}"
        if self.relation == "monotone":
            return " < ".join(names) + what
        return f"{names[0]} > each of {', '.join(names[1:])}{what}"


def _cell(value: Any, where: str, table) -> CellRef:
    if not isinstance(value, dict) or set(value) != {"row", "column"}:
        raise ConfigError(f"{where}: expected {{row: NAME, column: ID}}, got {value!r}")
    row, column = str(value["row"]), str(value["column"])
    if row not in [r.name for r in table.rows]:
        raise ConfigError(f"{where}.row: '{row}' is not a row of {table.path}")
    if column not in [c.id for c in table.columns]:
        raise ConfigError(f"{where}.column: '{column}' is not a column of {table.path}")
    return CellRef(row, column)


def _number(value: Any, where: str, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (positive and value <= 0) or value < 0:
        raise ConfigError(f"{where}: expected a {'positive' if positive else 'non-negative'} number, got {value!r}")
    return float(value)


def load_claims(path: Path, catalog) -> list[Claim]:
    """The claims of one file, each checked against its table file (rows, columns)."""
    data = load_yaml(path)
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("claims"), list):
        raise ConfigError(f"{where}: expected a mapping with 'paper' and a list 'claims'")
    paper = str(data.get("paper", ""))
    if paper != path.parent.name:
        raise ConfigError(f"{where}: paper: '{paper}', but the file is in tables/{path.parent.name}/")
    out: list[Claim] = []
    seen: set[str] = set()
    for i, c in enumerate(data["claims"]):
        cw = f"{where}: claims[{i}]"
        item_mapping(c, cw, _KEYS)
        for key in ("id", "section", "source", "table", "relation"):
            if not isinstance(c.get(key), str) or not c[key].strip():
                raise ConfigError(f"{cw}.{key}: required, a string")
        cw = f"{where}: {c['id']}"
        if c["id"] in seen:
            raise ConfigError(f"{cw}: id given twice")
        seen.add(c["id"])
        if c["relation"] not in RELATIONS:
            raise ConfigError(f"{cw}.relation: expected one of {', '.join(RELATIONS)}, got {c['relation']!r}")
        if c["table"] not in catalog.table_keys() or not c["table"].startswith(f"{paper}/"):
            raise ConfigError(f"{cw}.table: '{c['table']}' is not a table file of {paper}")
        table = catalog.table(c["table"])
        if c["relation"] in PAIRWISE:
            if "cells" in c or "a" not in c or "b" not in c:
                raise ConfigError(f"{cw}: relation {c['relation']} compares two cells: give a and b")
            cells = [_cell(c["a"], f"{cw}.a", table), _cell(c["b"], f"{cw}.b", table)]
        else:
            if "a" in c or "b" in c or not isinstance(c.get("cells"), list) or len(c["cells"]) < 2:
                raise ConfigError(f"{cw}: relation {c['relation']} orders cells: give a list 'cells' of 2 or more")
            cells = [_cell(v, f"{cw}.cells[{j}]", table) for j, v in enumerate(c["cells"])]
        tol = None
        if c["relation"] in ("within", "no_effect", "ratio_at_most"):
            if "tol" not in c:
                raise ConfigError(f"{cw}.tol: relation {c['relation']} needs a tolerance")
            tol = _number(c["tol"], f"{cw}.tol")
        elif "tol" in c:
            raise ConfigError(f"{cw}.tol: only within, no_effect and ratio_at_most take a tolerance")
        margin = _number(c.get("margin", 0.0), f"{cw}.margin", positive=False)
        statistic = c.get("statistic")
        cols = {col.id: col for col in table.columns}
        if statistic is not None:
            if statistic not in STATISTICS:
                raise ConfigError(f"{cw}.statistic: expected one of {', '.join(STATISTICS)}")
            if any(cols[ref.column].metric != "pair_cosine_histogram" for ref in cells):
                raise ConfigError(f"{cw}.statistic: only for pair_cosine_histogram columns")
        elif any(cols[ref.column].is_artifact for ref in cells):
            raise ConfigError(f"{cw}: a histogram or mask column needs a statistic ({', '.join(STATISTICS)})")
        metric = c.get("metric")
        if metric is not None and (not isinstance(metric, str) or not metric.startswith("train/")):
            raise ConfigError(f"{cw}.metric: expected a logged training metric such as train/seconds_per_iteration")
        out.append(Claim(paper=paper, id=c["id"], section=c["section"], source=" ".join(c["source"].split()),
                         table=c["table"], relation=c["relation"], cells=cells, tol=tol, margin=margin,
                         metric=metric, statistic=statistic, reading=" ".join(str(c.get("reading", "")).split()),
                         path=path))
    return out
