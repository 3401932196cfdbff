"""The claims ledger: each claim of the papers tested on the runs, and on the
papers' own printed numbers.

For every claim (benchmark.recipes.claims): the cells it names are read from
what the runs logged (the rows' own runs, never variants), the relation's
differences are paired over seeds, and the effect gets a 95% t-interval
(benchmark.report.stats). Verdicts: ``holds`` (the interval lies on the claimed
side), ``contradicted`` (on the other side), ``inconclusive`` (it straddles, or
fewer than two seeds), ``not_run``. ``paper_verdict`` applies the same relation
to the printed numbers alone: does the paper's table support its sentence?

Protocol: a verdict uses the runs' own model selection (ABE: the best test
Recall@1, the paper's protocol); where the runs also logged the clean protocol
(the last evaluation), a second verdict on it is given beside.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from benchmark import names as N
from benchmark.recipes import Catalog
from benchmark.recipes.claims import Claim

from . import stats as S
from .cells import Collected, collect_tables, records, selected_tables

SMOKE_NOTE = "smoke: says nothing about the method"
PROTOCOL_TEXT = {"last": "last evaluation", "best_test": "best on test (the paper's protocol)",
                 "best_val": "best on held-out training classes", "computed": "computed from the model"}
FIELDS = ["paper", "id", "table", "claim", "source", "cells", "relation", "paper_verdict", "verdict", "effect",
          "ci_low", "ci_high", "n", "profile", "protocol", "clean"]


@dataclass
class Result:
    claim: Claim
    paper_verdict: str
    verdict: str
    effect: Optional[float]
    ci_low: Optional[float]
    ci_high: Optional[float]
    n: int
    protocol: Optional[str]
    profile: str
    clean: Optional[dict] = None  # {protocol, verdict, effect, ci_low, ci_high, n}
    cells: list[dict] = field(default_factory=list)
    note: str = ""

    def as_dict(self) -> dict:
        c = self.claim
        return {"paper": c.paper, "id": c.id, "table": c.table, "claim": c.text(),
                "source": {"section": c.section, "quote": c.source, "reading": c.reading or None},
                "cells": self.cells, "relation": {"kind": c.relation, "tol": c.tol, "margin": c.margin or None,
                                                  "metric": c.metric, "statistic": c.statistic},
                "paper_verdict": self.paper_verdict, "verdict": self.verdict, "effect": self.effect,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "n": self.n, "profile": self.profile,
                "protocol": self.protocol, "clean": self.clean, "note": self.note or None}


# ---------------------------------------------------------------------------
# reading cells
# ---------------------------------------------------------------------------


class Cells:
    """The collected cells of the claims' tables, and what the runs behind them logged."""

    def __init__(self, catalog: Catalog, tables: list[str], profile: str, store):
        selected = [s for s in selected_tables(catalog, ",".join(tables))] if tables else []
        self.collected: Collected = collect_tables(catalog, selected, profile, store)
        self.by_key = {(f"{c['paper']}/{c['table']}", c["row"], c["column"]): c
                       for c in records(self.collected.df) if c.get("variant") is None}
        self.store = store
        self._stats: dict[tuple, Optional[float]] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="benchmark-claims-")

    def cell(self, table: str, ref) -> dict:
        return self.by_key[(table, ref.row, ref.column)]

    def _statistic(self, run_id: str, name: str) -> Optional[float]:
        key = (run_id, name)
        if key not in self._stats:
            local = self.store.artifact(run_id, N.FIGURE_ARTIFACTS["pair_cosine_histogram"],
                                        Path(self._tmp.name) / run_id)
            value = None
            if local is not None:
                with np.load(local) as data:
                    kind = name.split("_")[0]
                    if kind in data.files and data[kind].size:
                        value = float(np.mean(data[kind]))
            self._stats[key] = value
        return self._stats[key]

    def series(self, claim: Claim, ref, clean: bool = False) -> Any:
        """A cell as a claim reads it: a constant (cited row, computed statistic),
        seed -> value over its runs, or None (nothing to read)."""
        cell = self.cell(claim.table, ref)
        if cell["kind"] == "cited":
            return cell["paper_value"]
        if cell["kind"] == "stat":
            return cell["reproduced"]
        if cell["kind"] not in ("run", "artifact") or not cell["run_ids"]:
            return None
        out = {}
        for i, (rid, seed) in enumerate(zip(cell["run_ids"], cell["seeds"])):
            seed = seed if seed is not None else i
            if claim.statistic:
                value = self._statistic(rid, claim.statistic)
            elif claim.metric:
                value = self.collected.runs[rid].metrics.get(claim.metric) if rid in self.collected.runs else None
            else:
                values = cell["clean_values"] if clean and cell["clean_values"] else cell["values"]
                value = values[i] if i < len(values) else None
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                out[seed] = float(value)
        return out or None

    def protocol(self, claim: Claim) -> Optional[str]:
        """The model selection of the runs a claim reads ('computed' for model statistics)."""
        sels = {self.cell(claim.table, ref)["selection"] for ref in claim.cells} - {None}
        if sels != {"computed"}:
            sels.discard("computed")
        return ", ".join(sorted(sels)) or None

    def has_clean(self, claim: Claim) -> bool:
        return any(self.cell(claim.table, ref)["clean_values"] for ref in claim.cells)


# ---------------------------------------------------------------------------
# relations
# ---------------------------------------------------------------------------


def _comparisons(claim: Claim) -> list[tuple[int, int]]:
    """The (a, b) index pairs whose differences a claim's relation tests."""
    n = len(claim.cells)
    if claim.relation == "monotone":
        return [(i + 1, i) for i in range(n - 1)]
    if claim.relation == "highest":
        return [(0, i) for i in range(1, n)]
    return [(0, 1)]


def _judge(claim: Claim, iv: S.Interval) -> str:
    if claim.relation in ("within", "no_effect"):
        return S.within(iv, claim.tol)
    if claim.relation == "ratio_at_most":  # on log a - log b: a/b <= tol
        flipped = S.Interval(-iv.mean if iv.mean is not None else None,
                             -iv.high if iv.high is not None else None,
                             -iv.low if iv.low is not None else None, iv.n, iv.exact)
        return S.side(flipped, -math.log(claim.tol))
    return S.side(iv, claim.margin)


def _test(claim: Claim, values: list[Any]) -> tuple[str, Optional[S.Interval]]:
    """Verdict and the deciding comparison's interval (the weakest link of an ordering)."""
    if any(v is None for v in values):
        return S.NOT_RUN, None
    log = claim.relation == "ratio_at_most"
    if log and any((v if not isinstance(v, dict) else min(v.values())) <= 0 for v in values):
        return S.NOT_RUN, None
    results = []
    for a, b in _comparisons(claim):
        iv = S.difference(values[a], values[b], log=log)
        if iv.n == 0:
            return S.NOT_RUN, None
        results.append((_judge(claim, iv), iv))
    verdict = S.combine([v for v, _ in results])
    order = {S.CONTRADICTED: 0, S.INCONCLUSIVE: 1, S.HOLDS: 2}
    decisive = min(results, key=lambda r: (order.get(r[0], 3), r[1].low if r[1].low is not None else r[1].mean))
    return verdict, decisive[1]


def _report(claim: Claim, iv: Optional[S.Interval]) -> tuple[Optional[float], Optional[float], Optional[float], int]:
    if iv is None:
        return None, None, None, 0
    if claim.relation == "ratio_at_most":  # report the ratio itself
        f = math.exp
        return f(iv.mean), f(iv.low) if iv.low is not None else None, f(iv.high) if iv.high is not None else None, iv.n
    return iv.mean, iv.low, iv.high, 1 if iv.exact else iv.n


def paper_verdict(claim: Claim, catalog: Catalog) -> str:
    """The relation on the printed numbers alone."""
    table = catalog.table(claim.table)
    cols = [c.id for c in table.columns]
    values = []
    for ref in claim.cells:
        row = table.row(ref.row)
        values.append(row.values[cols.index(ref.column)])
    if claim.metric or claim.statistic or any(v is None for v in values):
        return S.NOT_PRINTED
    verdict, _ = _test(claim, values)
    return verdict


def evaluate(catalog: Catalog, claims: list[Claim], profile: str, store) -> list[Result]:
    """Every claim's verdicts (runs of ``profile`` in ``store``; paper numbers)."""
    cells = Cells(catalog, sorted({c.table for c in claims}), profile, store)
    out = []
    for claim in claims:
        verdict, iv = _test(claim, [cells.series(claim, ref) for ref in claim.cells])
        effect, lo, hi, n = _report(claim, iv)
        protocol = cells.protocol(claim) if verdict != S.NOT_RUN else None
        clean = None
        if protocol in ("best_test", "best_val") and cells.has_clean(claim) and not claim.metric:
            cv, civ = _test(claim, [cells.series(claim, ref, clean=True) for ref in claim.cells])
            ce, clo, chi, cn = _report(claim, civ)
            clean = {"protocol": "last", "verdict": cv, "effect": ce, "ci_low": clo, "ci_high": chi, "n": cn}
        described = []
        for ref in claim.cells:
            c = cells.cell(claim.table, ref)
            described.append({"row": ref.row, "column": ref.column, "paper_value": c["paper_value"],
                              "reproduced": c["reproduced"], "n": c["n"], "kind": c["kind"]})
        res = Result(claim, paper_verdict(claim, catalog), verdict, effect, lo, hi, n, protocol, profile, clean,
                     described)
        if profile == "smoke" and verdict != S.NOT_RUN:
            res.note = SMOKE_NOTE
        out.append(res)
    return out
