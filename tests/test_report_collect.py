"""Report: paper vs reproduced numbers collected from a small MLflow store made here.

One module-scoped sqlite store holds fake finished runs (tags as the runner writes
them) for the specs that `expand` gives for dm2/table1 and a few test tables under
the smoke profile. Importing mlflow and creating the sqlite store (its schema
migrations) take 10-20 s once per module; the tests that use the store are marked slow.
"""

from __future__ import annotations

import math
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.errors import UserError
from benchmark.recipes import Catalog, Context, expand
from benchmark.report import cells as collect_mod
from benchmark.report import collect, paper_cells, report_cells, write_report
from benchmark.report.figures import draw_figure, figure_kind, x_attr
from benchmark.report.cells import RunStore

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


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("report")
    catalog = _project(tmp / "project")
    uri = f"sqlite:///{tmp}/m.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("dm2", artifact_location=(tmp / "artifacts").as_uri())
    specs = expand(catalog, catalog.select("dm2"), Context(profile="smoke", seeds=[0, 1]))

    def make_run(spec, metrics: dict, *, profile="smoke", status="FINISHED", history=None, artifact=None):
        run = client.create_run(exp, tags={
            "bench.hash": spec.hash, "bench.group": spec.group, "bench.paper": "dm2",
            "bench.tables": ",".join(spec.tables), "bench.profile": profile,
            "bench.seed": str(spec.seed), "bench.label": spec.label,
        })
        rid = run.info.run_id
        ms = [Metric(k, float(v), 0, 0) for k, v in metrics.items()]
        for key, points in (history or {}).items():
            ms += [Metric(key, float(v), 0, step) for step, v in points]
        client.log_batch(rid, metrics=ms)
        if artifact is not None:
            client.log_artifact(rid, str(artifact), artifact_path="figures")
        if status != "RUNNING":
            client.set_terminated(rid, status)
        return rid

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
    return types.SimpleNamespace(catalog=catalog, uri=uri, tmp=tmp, specs=specs)


@pytest.fixture(autouse=True)
def fake_model_stats(monkeypatch):
    """benchmark.stats builds real paper-size networks: too slow here; tests stub it."""
    monkeypatch.setitem(sys.modules, "benchmark.stats", types.SimpleNamespace(
        config_model_stats=lambda cfg: {"params_1e7": 0.5, "gflops": 1.0}))
    collect_mod._stats_cache.clear()
    yield
    collect_mod._stats_cache.clear()


def _cell(df, table, row, column) -> dict:
    sel = df[(df["table"] == table) & (df["row"] == row) & (df["column"] == column)]
    assert len(sel) == 1
    return sel.iloc[0].to_dict()


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
    paths = write_report(store.catalog, "dm2/table1,dm2/table9,dm2/figure9", "smoke", store.uri, out_dir=tmp_path,
                         extra_index=[("Tuning dm2/table6", tmp_path / "tune" / "t6.md")])
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
    assert "NOT A REPRODUCTION" in tex and r"\_" in (tmp_path / "dm2" / "table1.tex").read_text()
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
    from benchmark.report.cells import _collect, select_tables
    from benchmark.report.render import cell_text, legend_markdown

    catalog = Catalog()
    specs = expand(catalog, catalog.select("abe/table1"), Context(profile="smoke"))
    spec = _spec(specs, "table1", "ABE-8-512", "ind_r1")
    runs = [types.SimpleNamespace(run_id=f"r{i}", seed=i, metrics={
        "final/learners_mean/recall_at_1": 50.0 + 2 * i, "final/learners_std/recall_at_1": 0.4 + 0.2 * i,
        "final_last/learners_mean/recall_at_1": 49.0, "final_last/learners_std/recall_at_1": 0.3,
    }) for i in range(2)]
    store = types.SimpleNamespace(uri="test", runs_by_group=lambda profile: {spec.group: runs})
    selected = select_tables(catalog, "abe/table1")
    df = _collect(catalog, selected, "smoke", store).df
    cell = _cell(df, "table1", "ABE-8-512", "ind_r1")
    assert cell["reproduced"] == pytest.approx(51.0) and cell["std"] == pytest.approx(2 ** 0.5)
    assert cell["spread"] == pytest.approx(0.5) and cell["clean_spread"] == pytest.approx(0.3)
    text = cell_text(cell, 2)
    assert text.reproduced == "51.00 ± 0.50 (n=2; seeds ± 1.41)" and text.clean == "49.00 ± 0.30 (n=2; seeds ± 0.00)"
    assert cell_text(cell, 2, tex=True).reproduced == r"$51.00 \pm 0.50$ (2; seeds $\pm 1.41$)"
    ens = _cell(df, "table1", "ABE-8-512", "ens_r1")
    assert ens["spread"] is None or ens["spread"] != ens["spread"]  # None/NaN: an ensemble has no learner spread
    one = _spec(specs, "table1", "ABE-1-512", "ind_r1")  # one learner: no spread (the paper prints "-")
    store.runs_by_group = lambda profile: {one.group: runs}
    assert _cell(_collect(catalog, selected, "smoke", store).df, "table1", "ABE-1-512", "ind_r1")["spread"] is None
    table = catalog.table("abe/table1")
    assert "standard deviation over the ensemble's learners" in legend_markdown(table, [cell])[0]
