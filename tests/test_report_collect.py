"""Report: paper vs reproduced numbers collected from a small MLflow store made here.

One module-scoped sqlite store holds fake finished runs (tags as the runner writes
them) for the specs that `expand` gives for dm2/table1 and a few test tables under
the smoke profile. Importing mlflow and creating the sqlite store (its schema
migrations) take 10-20 s once per module; the tests that use the store are marked slow.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark.errors import UserError
from benchmark.recipes import Catalog, Context, expand, select
from benchmark.report import collect, paper_cells, report_cells, write_report
from benchmark.report.figures import draw_figure, figure_kind, x_attr
from benchmark.report import cells as collect_mod
from benchmark.runner.records import RunRecord
from benchmark.runner.store import RunStore

ROOT = Path(__file__).resolve().parents[1]

TABLE9 = """
paper: dm2
id: table9
kind: table
title: "Test table with a cited row, model statistics and best-on-test selection"
caption: "A test table."
columns:
  - {id: cub_r1, group: CUB-200-2011, header: "1", dataset: cub200, metric: recall@1, source: member1}
  - {id: params, header: "#params (×10^7)", dataset: cub200, metric: params_1e7, source: model_stats}
rows:
  - {name: "Other [1]", cited: true, values: [55.5, 2.0]}
  - {name: "Best", cited: false, values: [70.25, 0.65]}
"""
RECIPE9 = "extends: defaults\nrows:\n  Best:\n    set: {selection: best_test, cohort.size: 1}\n"

FIGURE8 = """
paper: dm2
id: figure8
kind: figure
title: "Recall@1 vs cohort size (test)"
caption: "Test line figure."
columns:
  - {id: cub_single, group: CUB-200-2011, header: Single, dataset: cub200, metric: recall@1, source: member1}
rows:
  - {name: "one", attrs: {cohort_size: 1, series: "DM²"}, cited: false, values: [null]}
  - {name: "four", attrs: {cohort_size: 4, series: "DM²"}, cited: false, values: [null]}
"""
RECIPE8 = "extends: defaults\nrows:\n  one:\n    set: {cohort.size: 1}\n  four: {}\n"

FIGURE9 = """
paper: dm2
id: figure9
kind: figure
title: "Cosine histograms (test)"
caption: "Test histogram figure."
columns:
  - {id: cub_hist, header: Histograms, dataset: cub200, metric: pair_cosine_histogram, source: ensemble}
rows:
  - {name: "DM²", attrs: {panel: a}, cited: false, values: [null]}
"""
FIGURE10 = """
paper: dm2
id: figure10
kind: figure
title: "Recall@1 over training (test)"
caption: "Test curve figure."
columns:
  - {id: cub_member1, group: CUB-200-2011, header: R@1, dataset: cub200, metric: recall@1, source: member1}
rows:
  - {name: "DM²", attrs: {x_axis: training_progress}, cited: false, values: [null]}
"""
RECIPE_DEFAULT_ROW = "extends: defaults\nrows:\n  DM²: {}\n"


def _project(root: Path) -> Catalog:
    (root / "tables" / "dm2").mkdir(parents=True)
    (root / "recipes" / "dm2").mkdir(parents=True)
    shutil.copy(ROOT / "tables/dm2/table1.yaml", root / "tables/dm2/table1.yaml")
    for name in ("defaults", "table1"):
        shutil.copy(ROOT / f"recipes/dm2/{name}.yaml", root / f"recipes/dm2/{name}.yaml")
    files = {"table9": (TABLE9, RECIPE9), "figure8": (FIGURE8, RECIPE8),
             "figure9": (FIGURE9, RECIPE_DEFAULT_ROW), "figure10": (FIGURE10, RECIPE_DEFAULT_ROW)}
    for key, (table, recipe) in files.items():
        (root / f"tables/dm2/{key}.yaml").write_text(table, encoding="utf-8")
        (root / f"recipes/dm2/{key}.yaml").write_text(recipe, encoding="utf-8")
    return Catalog(root)


def _spec(specs, table: str, row: str, column: str):
    found = [s for s in specs if any((c.table, c.row, c.column) == (table, row, column) for c in s.cells)]
    assert len(found) == 1, (table, row, column)
    return found[0]


def _runs(tmp, uri):
    """Writes runs as the runner does (its Tracker: identity tags, cells, config.json)."""
    from benchmark.runner.tracking import Tracker

    tracker = Tracker(uri)

    def make_run(spec, metrics: dict, *, status="FINISHED", history=None, artifact=None, profile=None,
                 legacy=False) -> str:
        if profile is not None:
            spec = dataclasses.replace(spec, profile=profile)
        rid = tracker.start(spec)
        tracker.log_config(rid, spec, tmp / rid / "config.json")
        if legacy:  # as runs logged before cells and series were tagged
            tracker.client.delete_tag(rid, "bench.cells")
            tracker.client.delete_tag(rid, "bench.series")
        tracker.log_metrics(rid, metrics, step=0)
        for key, points in (history or {}).items():
            for step, v in points:
                tracker.log_metrics(rid, {key: v}, step=step)
        if artifact is not None:
            tracker.log_artifact(rid, artifact, "figures")
        if status != "RUNNING":
            tracker.finish(rid, status)
        return rid

    return make_run


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    catalog = _project(tmp / "project")
    uri = f"sqlite:///{tmp}/m.db"
    specs = expand(catalog, select(catalog, "dm2"), Context(profile="smoke", seeds=[0, 1]))
    make_run = _runs(tmp, uri)

    def cohort_metrics(offset: float) -> dict:
        out = {f"final/member{k}/recall_at_1": 60.0 + offset + k for k in range(1, 5)}
        out["final/ensemble/recall_at_1"] = 65.0 + offset
        return out

    rng = np.random.default_rng(0)
    npz = tmp / "pair_cosine.npz"
    np.savez(npz, positive=rng.uniform(0.3, 1, 200), negative=rng.uniform(-0.5, 0.5, 200),
             self=rng.uniform(0.5, 1, 100))
    seed0 = [s for s in specs if s.seed == 0]
    indep_cub = _spec(seed0, "table1", "Independent", "cub_net_a")
    md_cars = _spec(seed0, "table1", "MD", "cars_net_a")
    full_cub = _spec(seed0, "table1", "MD+TD+VD", "cub_net_a")
    best = _spec(seed0, "table9", "Best", "cub_r1")
    for spec in seed0:
        if spec is md_cars:  # only an unfinished run for this one
            make_run(spec, cohort_metrics(30.0), status="RUNNING")
        elif spec is best:
            make_run(spec, {"final/member1/recall_at_1": 71.0, "final_last/member1/recall_at_1": 69.5})
        elif spec is full_cub:
            make_run(spec, cohort_metrics(0.0), artifact=npz,
                     history={"test/member1/recall_at_1": [(1, 40.0), (2, 50.0), (3, 55.0)]})
        elif spec.config.cohort is not None and len(spec.config.cohort.members) == 1:
            make_run(spec, {"final/member1/recall_at_1": 50.0, "final/ensemble/recall_at_1": 50.0})
        else:
            make_run(spec, cohort_metrics(0.0))
    indep_cub1 = next(s for s in specs if s.group == indep_cub.group and s.seed == 1)
    make_run(indep_cub1, cohort_metrics(2.0))
    # must be ignored: unfinished, failed, other profile
    make_run(indep_cub1, cohort_metrics(30.0), status="RUNNING")
    make_run(indep_cub1, cohort_metrics(30.0), status="FAILED")
    make_run(indep_cub, cohort_metrics(30.0), profile="paper")
    return types.SimpleNamespace(catalog=catalog, uri=uri, tmp=tmp, specs=specs, make_run=make_run)


@pytest.fixture(autouse=True)
def fake_model_stats(monkeypatch):
    """benchmark.stats builds real paper-size networks: too slow here; tests stub it."""
    monkeypatch.setitem(sys.modules, "benchmark.stats", types.SimpleNamespace(
        config_model_stats=lambda cfg: {"params_1e7": 0.5, "gflops": 1.0}))
    collect_mod._stats_cache.clear()
    yield
    collect_mod._stats_cache.clear()


def _cell(df, table, row, column, variant=None) -> dict:
    """The row's own record of a cell (variant None), or the record of one variant."""
    sel = df[(df["table"] == table) & (df["row"] == row) & (df["column"] == column)]
    sel = sel[sel["variant"].isna()] if variant is None else sel[sel["variant"] == variant]
    assert len(sel) == 1, (row, column, variant, list(sel["variant"]))
    return sel.iloc[0].to_dict()


class FakeStore:
    """A store holding records as the runner tags them, without an MLflow database:
    for collection tests that need no SQLite store (creating one takes seconds)."""

    uri = "test"
    label = "test store"

    def __init__(self, runs, legacy=()):
        from benchmark.config import to_dict
        from benchmark.runner.tracking import identity_tags

        self.runs, self.configs, self.legacy = [], {}, {}
        for i, (spec, metrics) in enumerate(runs):
            tags = identity_tags(spec)
            if i in legacy:  # logged before cells and series were tagged: cells only in config.json
                tags = {k: v for k, v in tags.items() if not k.startswith(("bench.cells", "bench.series"))}
                self.legacy[f"r{i}"] = [(c.paper, c.table, c.row, c.column, None, None) for c in spec.cells]
            self.runs.append(RunRecord(run_id=f"r{i}", status="FINISHED", hash=spec.hash, metrics=metrics,
                                       tags=tags, end_time=i))
            self.configs[f"r{i}"] = {"config": to_dict(spec.config)}

    def finished_runs(self, profile):
        return self.runs

    def legacy_cells(self, run_id):
        return self.legacy.get(run_id, [])

    def logged_config(self, run_id):
        return self.configs.get(run_id)


@pytest.mark.slow  # shares the module's MLflow store: creating it takes ~10 s
def test_collect_aggregates_seeds_and_ignores_other_runs(store):
    df = collect(store.catalog, "dm2/table1", "smoke", store.uri)
    assert len(df) == 50
    # Independent cub200: seeds 0 and 1 finished with member1 = 61 and 63
    c = _cell(df, "table1", "Independent", "cub_net_a")
    assert c["n"] == 2 and c["reproduced"] == pytest.approx(62.0)
    assert c["std"] == pytest.approx(math.sqrt(2.0))  # sample std (ddof 1)
    assert c["paper_value"] == pytest.approx(66.07)
    assert sorted(c["seeds"]) == [0, 1]
    ens = _cell(df, "table1", "Independent", "cub_ens")
    assert ens["reproduced"] == pytest.approx(66.0) and ens["n"] == 2
    # one seed: std undefined
    one = _cell(df, "table1", "MD", "cub_net_d")
    assert one["n"] == 1 and one["reproduced"] == pytest.approx(64.0)
    assert one["std"] is None or math.isnan(one["std"])
    # MD cars196 has only a RUNNING run
    missing = _cell(df, "table1", "MD", "cars_net_a")
    assert missing["n"] == 0 and (missing["reproduced"] is None or math.isnan(missing["reproduced"]))
    assert set(df["selection"]) == {"last"}


@pytest.mark.slow  # shares the module's MLflow store: creating it takes ~10 s
def test_cited_rows_stats_and_clean_protocol(store, monkeypatch):
    seen = []

    def config_model_stats(cfg):
        seen.append([m.arch for m in cfg.cohort.members])
        return {"params_1e7": 0.5, "gflops": 1.0}

    monkeypatch.setitem(sys.modules, "benchmark.stats", types.SimpleNamespace(config_model_stats=config_model_stats))
    collect_mod._stats_cache.clear()
    cells = report_cells(store.catalog, "dm2/table9", "smoke", store.uri)
    by = {(c["row"], c["column"]): c for c in cells}
    for col in ("cub_r1", "params"):
        cited = by[("Other [1]", col)]
        assert cited["cited"] is True and cited["reproduced"] is None and cited["n"] == 0
    assert by[("Other [1]", "cub_r1")]["paper_value"] == 55.5
    best = by[("Best", "cub_r1")]
    assert best["selection"] == "best_test"
    assert best["reproduced"] == pytest.approx(71.0) and best["clean"] == pytest.approx(69.5)
    # statistics come from the PAPER-profile model, whatever the report's profile
    assert by[("Best", "params")]["reproduced"] == pytest.approx(0.5)
    assert seen == [["bn_inception"]]
    collect_mod._stats_cache.clear()
    monkeypatch.setitem(sys.modules, "benchmark.stats", None)  # import fails -> null, no crash
    cells = report_cells(store.catalog, "dm2/table9", "smoke", store.uri)
    assert {(c["row"], c["column"]): c for c in cells}[("Best", "params")]["reproduced"] is None


@pytest.mark.slow  # shares the module's MLflow store: creating it takes ~10 s
def test_markdown_and_latex_pages(store, tmp_path):
    paths, left = write_report(store.catalog, "dm2/table1,dm2/table9,dm2/figure9", "smoke", store.uri,
                               out_dir=tmp_path, extra_index=[("Tuning dm2/table6", tmp_path / "tune" / "t6.md")])
    assert left == []
    md = (tmp_path / "dm2" / "table1.md").read_text(encoding="utf-8")
    assert "NOT A REPRODUCTION" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| Independent"))
    assert "66.07" in line
    lines = md.splitlines()
    body = lines[lines.index(line) + 1:]
    assert "62.00 ± 1.41 (n=2)" in body[0] and "reproduced" in body[0]
    assert "-4.07" in body[1] and "Δ" in body[1]
    assert "70.71" in line  # Ens paper value
    assert "`schedule.epochs` = `6`" in md  # assumed settings with the value used
    md9 = (tmp_path / "dm2" / "table9.md").read_text(encoding="utf-8")
    assert "Other [1] ‡" in md9 and "best_test" in md9
    assert "reproduced (best on test)" in md9 and "clean (last eval.)" in md9
    assert "69.50 (n=1)" in md9 and "-0.75" in md9
    cited = next(ln for ln in md9.splitlines() if ln.startswith("| Other [1]"))
    lines9 = md9.splitlines()
    after = lines9[lines9.index(cited) + 1]
    assert after.startswith("| Best")  # the cited row has its paper line only
    tex = (tmp_path / "dm2" / "table1.tex").read_text(encoding="utf-8")
    assert r"\toprule" in tex and r"\multicolumn{5}{c}{CUB-200-2011}" in tex
    assert r"$62.00 \pm 1.41$ (2)" in tex and "$-4.07$" in tex and "$66.07$" in tex
    assert "Not a reproduction" in tex and r"\begin{table*}" in tex and r"\resizebox{\textwidth}" in tex
    assert "(dm2/table1.md)" in tex  # the assumed settings stay on the Markdown page
    index = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "(dm2/table1.md)" in index and "(dm2/figure9.md)" in index
    assert "[Tuning dm2/table6](tune/t6.md)" in index and "`smoke`" in index
    assert paths[-1] == tmp_path / "README.md"
    for fig in ("figure9",):
        png = tmp_path / "dm2" / f"{fig}.png"
        assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"
        assert (tmp_path / "dm2" / f"{fig}.pdf").exists()
        assert f"![DM² Figure {fig[6:]}]({fig}.png)" in (tmp_path / "dm2" / f"{fig}.md").read_text(encoding="utf-8")


@pytest.mark.slow  # shares the module's MLflow store: creating it takes ~10 s
def test_figures_draw_the_collected_data(store):
    cat = store.catalog
    df = collect(cat, "dm2/figure8,dm2/figure9,dm2/figure10", "smoke", store.uri)
    rs = RunStore(store.uri)
    recs = collect_mod.records

    t8 = cat.table("dm2/figure8")
    assert figure_kind(t8) == "lines" and x_attr(t8) == "cohort_size"
    fig = draw_figure(t8, recs(df[df["table"] == "figure8"]), rs)
    line = fig.axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [1, 4] and list(line.get_ydata()) == pytest.approx([50.0, 61.0])

    t10 = cat.table("dm2/figure10")
    assert figure_kind(t10) == "curves"
    fig = draw_figure(t10, recs(df[df["table"] == "figure10"]), rs)
    curve = fig.axes[0].get_lines()[0]
    assert list(curve.get_xdata()) == [1, 2, 3] and list(curve.get_ydata()) == pytest.approx([40, 50, 55])

    t9 = cat.table("dm2/figure9")
    assert figure_kind(t9) == "histograms"
    fig = draw_figure(t9, recs(df[df["table"] == "figure9"]), rs)
    assert len(fig.axes[0].patches) > 0  # histogram bars from figures/pair_cosine.npz


def test_real_tables_figure_kinds():
    cat = Catalog(ROOT)
    kinds = {t.key: figure_kind(t) for t in cat.tables() if t.kind == "figure"}
    assert kinds["dm2/figure2"] == "lines" and x_attr(cat.table("dm2/figure2")) == "cohort_size"
    assert kinds["dm2/figure3"] == "curves"
    assert kinds["abe/figure5"] == "histograms" and kinds["abe/figure6"] == "image_grid"
    assert x_attr(cat.table("abe/figure7a")) == "attention_depth"
    assert x_attr(cat.table("abe/figure7b")) == "branch_point"
    assert x_attr(cat.table("abe/figure7c")) == "lambda_div"


def test_paper_cells_cover_every_printed_number():
    cat = Catalog(ROOT)
    cells = paper_cells(cat, "dm2/table1")
    data = yaml.safe_load((ROOT / "tables/dm2/table1.yaml").read_text(encoding="utf-8"))
    printed = [(r["name"], c["id"], v) for r in data["rows"] for c, v in zip(data["columns"], r["values"])
               if v is not None]
    assert len(printed) == 50
    got = {(c["row"], c["column"]): c["value"] for c in cells}
    assert len(got) == len(cells) == 50
    for row, col, v in printed:
        assert got[(row, col)] == pytest.approx(v)
    abe4 = paper_cells(cat, "abe/table4")
    assert any(c["cited"] and c["row"] == "HDC [39]" and c["value"] == 53.6 for c in abe4)
    assert {c["table"] for c in paper_cells(cat, "all")} >= {"table1", "figure2", "table7"}


def test_selection_errors_and_missing_store(tmp_path):
    cat = Catalog(ROOT)
    with pytest.raises(UserError) as err:
        paper_cells(cat, "dm2/table99")
    assert "\n" not in str(err.value) and "dm2/table99" in str(err.value)
    with pytest.raises(UserError):
        paper_cells(cat, "nopaper")
    db = tmp_path / "none.db"
    df = collect(cat, "dm2/table1", "smoke", f"sqlite:///{db}")
    assert df["n"].sum() == 0 and not db.exists()  # a missing store is read as "nothing ran"


def test_individual_learner_cells_show_the_papers_spread():
    """ABE's "Individual Learners" ± is the std over the M learners, not over seeds:
    the cell carries it (mean over seeds of final/learners_std) and prints it as
    the ±, with the std over seeds beside it."""
    from benchmark.report.cells import collect_tables, selected_tables
    from benchmark.report.markdown import legend_markdown
    from benchmark.report.text import cell_text

    catalog = Catalog()
    specs = expand(catalog, select(catalog, "abe/table1"), Context(profile="smoke", seeds=[0, 1]))
    seed0 = [s for s in specs if s.seed == 0]
    seeds = [s for s in specs if s.series == _spec(seed0, "table1", "ABE-8-512", "ind_r1").series]
    assert [s.seed for s in seeds] == [0, 1]
    store = FakeStore([(spec, {
        "final/learners_mean/recall_at_1": 50.0 + 2 * i, "final/learners_std/recall_at_1": 0.4 + 0.2 * i,
        "final_last/learners_mean/recall_at_1": 49.0, "final_last/learners_std/recall_at_1": 0.3,
    }) for i, spec in enumerate(seeds)])
    selected = selected_tables(catalog, "abe/table1")
    df = collect_tables(catalog, selected, "smoke", store).df
    cell = _cell(df, "table1", "ABE-8-512", "ind_r1")
    assert cell["reproduced"] == pytest.approx(51.0) and cell["std"] == pytest.approx(2 ** 0.5)
    assert cell["spread"] == pytest.approx(0.5) and cell["clean_spread"] == pytest.approx(0.3)
    text = cell_text(cell, 2)
    assert text.reproduced == "51.00 ± 0.50 (n=2; seeds ± 1.41)" and text.clean == "49.00 ± 0.30 (n=2; seeds ± 0.00)"
    assert cell_text(cell, 2, tex=True).reproduced == r"$51.00 \pm 0.50$ (2; seeds $\pm 1.41$)"
    ens = _cell(df, "table1", "ABE-8-512", "ens_r1")
    assert ens["spread"] is None or ens["spread"] != ens["spread"]  # None/NaN: an ensemble has no learner spread
    one = _spec(seed0, "table1", "ABE-1-512", "ind_r1")  # one learner: no spread ("-")
    store = FakeStore([(one, {"final/learners_mean/recall_at_1": 50.0, "final/learners_std/recall_at_1": 0.0})])
    assert _cell(collect_tables(catalog, selected, "smoke", store).df, "table1", "ABE-1-512", "ind_r1")["spread"] is None
    table = catalog.table("abe/table1")
    assert "standard deviation over the ensemble's learners" in legend_markdown(table, [cell])[0]


def _table1_specs(overrides=(), seeds=(0,)):
    catalog = Catalog()
    ctx = Context(profile="smoke", seeds=list(seeds), overrides=list(overrides), datasets=["cub200"])
    return catalog, expand(catalog, select(catalog, "dm2/table1"), ctx)


def _metrics(value: float) -> dict:
    return {f"final/{s}/recall_at_{k}": value for s in ("member1", "member2", "member3", "member4", "ensemble")
            for k in (1, 2, 4, 8)}


def test_set_and_tuned_runs_are_labelled_variants_of_their_row(tmp_path):
    """A run made with --set, or with a tuned best.yaml, is a variant record of its row
    (never averaged into the row's own runs); a run on another synthetic dataset too."""
    from benchmark.recipes import load_overrides_file, override_layer
    from benchmark.report.cells import collect_tables, selected_tables

    catalog, own = _table1_specs(seeds=(0, 1))
    full = [s for s in own if any(c.row == "MD+TD+VD" for c in s.cells)]
    (lam5,) = [s for s in _table1_specs([override_layer("cohort.lambda_mutual", 5, "--set cohort.lambda_mutual")])[1]
               if any(c.row == "MD+TD+VD" for c in s.cells)]
    best = tmp_path / "best.yaml"
    best.write_text("scope: {recipe: dm2/table1, row: MD+TD+VD, dataset: cub200}\nset: {cohort.lambda_mutual: 11.4}\n")
    tuned = _table1_specs([load_overrides_file(best)])[1]
    tuned_full = [s for s in tuned if any(c.row == "MD+TD+VD" for c in s.cells)]
    assert len(tuned_full) == 1 and tuned_full[0].hash not in {s.hash for s in own}
    # the scope leaves every other row's run as it is
    assert {s.hash for s in tuned if s not in tuned_full} <= {s.hash for s in own}
    other_data = [s for s in _table1_specs([override_layer("data.synthetic.seed", 7, "--set data.synthetic.seed")])[1]
                  if any(c.row == "MD+TD+VD" for c in s.cells)][0]
    assert other_data.group == full[0].group  # the old group tag cannot tell them apart; the series can
    assert other_data.series != full[0].series
    runs = [(full[0], _metrics(60.0)), (full[1], _metrics(62.0)), (lam5, _metrics(70.0)),
            (tuned_full[0], _metrics(75.0)), (other_data, _metrics(90.0))]
    df = collect_tables(catalog, selected_tables(catalog, "dm2/table1"), "smoke", FakeStore(runs)).df
    mine = _cell(df, "table1", "MD+TD+VD", "cub_ens")
    assert mine["n"] == 2 and mine["reproduced"] == pytest.approx(61.0) and pd.isna(mine["variant"])
    v5 = _cell(df, "table1", "MD+TD+VD", "cub_ens", "cohort.lambda_mutual=5")
    assert v5["n"] == 1 and v5["reproduced"] == pytest.approx(70.0)
    assert _cell(df, "table1", "MD+TD+VD", "cub_ens", "cohort.lambda_mutual=11.4")["reproduced"] == pytest.approx(75.0)
    assert _cell(df, "table1", "MD+TD+VD", "cub_ens", "data.synthetic.seed=7")["reproduced"] == pytest.approx(90.0)
    # the λ-0 Independent row is untouched by the tuned (scoped) run
    assert set(df[df["row"] == "Independent"]["variant"].dropna()) == set()

    from benchmark.report.markdown import markdown_table

    cells = collect_mod.records(df)
    text = markdown_table(catalog.table("dm2/table1"), cells)
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("| MD+TD+VD"))
    block = "\n".join(lines[start:start + 8])
    assert "variant: cohort.lambda_mutual=5" in block and "70.00 (n=1)" in block
    assert "variant: data.synthetic.seed=7" in block


def test_legacy_runs_without_cells_tag_are_read_from_their_config(tmp_path):
    """Runs logged before the cells tag existed fill their cells from config.json
    (source and metric completed from the recipe), so stored runs stay reported."""
    from benchmark.report.cells import collect_tables, selected_tables

    catalog, own = _table1_specs()
    full = [s for s in own if any(c.row == "MD+TD+VD" for c in s.cells)][0]
    store = FakeStore([(full, _metrics(64.0))], legacy={0})
    assert store.runs[0].cells() is None and store.runs[0].series is None
    df = collect_tables(catalog, selected_tables(catalog, "dm2/table1"), "smoke", store).df
    cell = _cell(df, "table1", "MD+TD+VD", "cub_net_b")
    assert cell["reproduced"] == pytest.approx(64.0) and cell["source"] == "member2"


def test_report_rewrites_only_the_pages_it_has_runs_for(tmp_path):
    from benchmark.report.index import write_report as write

    catalog, own = _table1_specs()
    full = [s for s in own if any(c.row == "MD+TD+VD" for c in s.cells)][0]
    out = tmp_path / "reports"
    (out / "dm2").mkdir(parents=True)
    (out / "dm2" / "table2.md").write_text("left alone\n")
    paths, left = write(catalog, "dm2", "smoke", store=FakeStore([(full, _metrics(64.0))]), out_dir=out)
    assert "dm2/table2" in left and "dm2/table1" not in left
    assert (out / "dm2" / "table2.md").read_text() == "left alone\n"
    assert {p.relative_to(out).as_posix() for p in paths} == {
        "dm2/table1.md", "dm2/table1.tex", "pages.json", "README.md",  # the table with runs, manifest, index
        "claims.md", "claims/dm2.png", "claims/dm2.pdf", "claims/abe.png", "claims/abe.pdf"}  # the ledger
    index = (out / "README.md").read_text(encoding="utf-8")
    assert "[DM² Table 1](dm2/table1.md)" in index and "test store" in index and "`smoke`" in index
    paths, left = write(catalog, "dm2/table2", "smoke", store=FakeStore([]), out_dir=out, render_all=True)
    assert left == [] and (out / "dm2" / "table2.md").read_text() != "left alone\n"
    index = (out / "README.md").read_text(encoding="utf-8")
    assert "[DM² Table 1](dm2/table1.md)" in index and "[DM² Table 2](dm2/table2.md)" in index  # both listed


def test_a_cell_named_again_is_one_cell_of_its_run():
    """A legacy run (cells without source) reused by a later command: the union of its
    cells names each cell once, and the report counts the run once per cell."""
    from benchmark.runner.records import merge_cells

    old = [("dm2", "table1", "MD", "cub_ens", None, None), ("dm2", "table5", "4×BNI", "cub_ens", None, None)]
    new = [("dm2", "table1", "MD", "cub_ens", "ensemble", "recall@1")]
    assert merge_cells(old, new) == {new[0], old[1]}
