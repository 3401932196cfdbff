"""The claims ledger: claims files against the papers' text and tables, the
statistics against brute force, verdicts on runs with known numbers, and the
paper's own printed numbers checked against its sentences."""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from pathlib import Path

import pytest
from scipy import stats as st

from benchmark.recipes import Catalog, Context, expand, select
from benchmark.report import stats as S
from benchmark.report.claims import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from test_report_collect import FakeStore, _metrics  # noqa: E402

PAPERS = Path(__file__).resolve().parents[2] / "shared" / "papers"


def _norm(text: str) -> str:
    for a, b in (("²", "2"), ("^{2}", "2"), ("^2", "2"), ("\\cdot", ""), ("·", ""), ("\\lambda", "λ"),
                 ("\\mathcal{L}", "L")):
        text = text.replace(a, b)
    return re.sub(r"[^a-z0-9λ]", "", text.lower())


@pytest.fixture(scope="module")
def claims():
    return Catalog().claims()


def test_claims_quote_their_papers_and_name_real_cells(claims):
    """Every claim's sentence is in its paper (parts around [...] in order), and the
    files hold at least the claims the ledger promises."""
    texts = {}
    for p in PAPERS.glob("*.txt"):
        texts["dm2" if p.name.startswith("dm2") else "abe"] = _norm(p.read_text(encoding="utf-8"))
    if set(texts) != {"dm2", "abe"}:  # the papers sit beside the checkout (../shared/papers), not in it
        pytest.skip(f"the papers' texts are not in {PAPERS}")
    for c in claims:
        pos = 0
        for part in c.source.split("[...]"):
            found = texts[c.paper].find(_norm(part), pos)
            assert found >= 0, f"{c.id}: not in the paper: {part!r}"
            pos = found
    per = {p: sum(c.paper == p for c in claims) for p in ("dm2", "abe")}
    assert per["dm2"] >= 10 and per["abe"] >= 8
    sections = {c.section for c in claims}
    assert {"3.3", "4.3", "4.4", "4.5", "4.6", "4.7", "4.8", "6.1", "6.2", "6.3"} <= sections


def test_t_interval_and_paired_difference_against_scipy():
    vals = [61.0, 63.5, 60.25, 64.0]
    iv = S.t_interval(vals)
    lo, hi = st.t.interval(0.95, len(vals) - 1, loc=statistics.fmean(vals), scale=st.sem(vals))
    assert iv.mean == pytest.approx(statistics.fmean(vals)) and (iv.low, iv.high) == (pytest.approx(lo), pytest.approx(hi))
    assert S.t_interval([5.0]).low is None and S.t_interval([]).n == 0
    d = S.difference({0: 10.0, 1: 12.0, 2: 11.0}, {0: 9.0, 1: 9.5, 2: 10.0, 3: 99.0})  # seed 3 unpaired: left out
    assert d.n == 3 and d.mean == pytest.approx((1 + 2.5 + 1) / 3)
    assert S.difference({0: 3.0, 1: 5.0}, 2.0).mean == pytest.approx(2.0)  # against a cited number
    assert S.difference(math.e, 1.0, log=True).mean == pytest.approx(1.0) and S.difference(1.0, 2.0).exact


def test_verdict_rules():
    holds, contra, wide = S.t_interval([2, 3, 4]), S.t_interval([-2, -3, -4]), S.t_interval([1, -1, 2])
    assert S.side(holds, 0) == S.HOLDS and S.side(contra, 0) == S.CONTRADICTED and S.side(wide, 0) == S.INCONCLUSIVE
    assert S.side(S.t_interval([5]), 0) == S.INCONCLUSIVE and S.side(S.t_interval([]), 0) == S.NOT_RUN
    assert S.within(S.t_interval([0.1, -0.2, 0.0]), 1.0) == S.HOLDS
    assert S.within(S.t_interval([3, 3.5, 4]), 1.0) == S.CONTRADICTED
    assert S.combine([S.HOLDS, S.HOLDS]) == S.HOLDS and S.combine([S.HOLDS, S.CONTRADICTED]) == S.CONTRADICTED
    assert S.combine([S.HOLDS, S.INCONCLUSIVE]) == S.INCONCLUSIVE


def test_paper_verdicts_of_the_printed_numbers(claims):
    """The papers' own tables against their sentences: DM²'s "MD is worse" holds on
    the ensembles and not on the single models; ABE's "best on all benchmarks" does
    not hold on CUB, where its Table 4 prints Margin (ResNet-50) above ABE-8."""
    from benchmark.report.claims import paper_verdict

    cat = Catalog()
    by = {c.id: paper_verdict(c, cat) for c in claims}
    assert by["md-below-independent-ens-cub"] == S.HOLDS and by["md-below-independent-ens-cars"] == S.HOLDS
    assert by["md-below-independent-single-cub"] == S.CONTRADICTED
    assert by["best-on-cub"] == S.CONTRADICTED and by["best-on-cars"] == S.HOLDS
    assert by["inshop-within-a-point-of-the-best"] == S.HOLDS  # 89.6 vs HORDE 90.4
    assert by["monotone-in-cohort-size-cub"] == S.NOT_PRINTED  # a figure: no printed numbers
    assert by["r50-grows-with-bni-cub"] == S.CONTRADICTED  # 66.71, 66.44, 66.90, 66.63


def _table1_runs(offsets: dict[str, list[float]]):
    catalog = Catalog()
    specs = expand(catalog, select(catalog, "dm2/table1"), Context(profile="smoke", seeds=[0, 1, 2],
                                                                  datasets=["cub200"]))
    row_of = {s.hash: next(c.row for c in s.cells) for s in specs}
    runs = [(s, _metrics(offsets[row_of[s.hash]][s.seed])) for s in specs if s.seed < len(offsets[row_of[s.hash]])]
    return catalog, FakeStore(runs)


def test_verdicts_from_runs_with_known_numbers():
    """Independent beats MD on every seed (holds), MD+TD is below MD on every seed
    (contradicted), MD+VD straddles (inconclusive); Cars has no runs (not_run)."""
    catalog, store = _table1_runs({"Independent": [70, 71, 72], "MD": [66, 66.5, 68], "MD+TD": [60, 61, 62],
                                   "MD+VD": [65, 68, 67], "MD+TD+VD": [70, 70, 70]})
    claims = [c for c in catalog.claims(["dm2"]) if c.table == "dm2/table1"]
    res = {r.claim.id: r for r in evaluate(catalog, claims, "smoke", store)}
    r = res["md-below-independent-ens-cub"]
    assert r.verdict == S.HOLDS and r.n == 3 and r.effect == pytest.approx((4 + 4.5 + 4) / 3)
    lo, hi = st.t.interval(0.95, 2, loc=r.effect, scale=st.sem([4, 4.5, 4]))
    assert (r.ci_low, r.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    assert res["td-improves-md-cub"].verdict == S.CONTRADICTED
    assert res["vd-improves-md-cub"].verdict == S.INCONCLUSIVE
    assert res["md-below-independent-ens-cars"].verdict == S.NOT_RUN
    assert r.protocol == "last" and r.clean is None and r.note.startswith("smoke")


def test_claims_on_an_empty_home_are_not_run_with_sources_and_paper_verdicts(tmp_path, monkeypatch, capsys):
    from benchmark.cli import main

    monkeypatch.setenv("BENCHMARK_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "benchmark.stats", type(sys)("stub"))
    sys.modules["benchmark.stats"].config_model_stats = lambda cfg: {"params_1e7": 0.5, "gflops": 1.0}
    assert main(["claims", "--profile", "smoke", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) >= 18 and not (tmp_path / "empty").exists()  # read-only: no store is created
    for c in out:
        assert set(c) >= {"paper", "id", "table", "claim", "source", "cells", "relation", "paper_verdict", "verdict",
                          "effect", "ci_low", "ci_high", "n", "profile", "protocol"}
        assert c["source"]["quote"] and c["cells"]
        computed = all(cell["kind"] == "stat" for cell in c["cells"])  # model size: decided without training
        assert c["verdict"] == ("holds" if computed else "not_run") or computed, c["id"]
        assert c["paper_verdict"] in ("holds", "contradicted", "not_printed")
