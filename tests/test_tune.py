"""`python -m benchmark tune`: search spaces and --param checks (fast), and smoke studies
end to end on CPU (slow: a study continues across invocations, two worker processes
share a study, a pruned trial shows as pruned in Optuna and MLflow, the best values
as an overrides file change what `plan`/`run` make, and `report` gets a tuning page)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import ConfigError
from benchmark.recipes import Catalog, Context, Resolver, select
from benchmark.tune.target import find_target, fix_rows
from benchmark.tune.space import ParamSpec, default_space, parse_param, parse_params, primary_source

# ---------------------------------------------------------------------------
# fast: spaces and --param
# ---------------------------------------------------------------------------


def _cfg(name: str, row: str, dataset: str = "cub200", binding: int = 0, profile: str = "paper"):
    catalog = Catalog()
    recipe = catalog.recipe(name)
    return Resolver(catalog, Context(profile=profile)).resolve(recipe, recipe.rows[row].bindings[binding], dataset, False, 0)


@pytest.fixture(scope="module")
def cohort_cfg():
    return _cfg("dm2/table1", "MD+TD+VD")


def test_param_parsing_kinds_and_log(cohort_cfg):
    assert parse_param("cohort.lambda_mutual=2:200:log", cohort_cfg) == ParamSpec("cohort.lambda_mutual", 2.0, 200.0, True, "float")
    assert parse_param("optim.lr=1e-5:1e-3", cohort_cfg) == ParamSpec("optim.lr", 1e-5, 1e-3, False, "float")
    spec = parse_param("cohort.member.embedding_dim=32:128", cohort_cfg)
    assert (spec.kind, spec.low, spec.high) == ("int", 32, 128) and isinstance(spec.low, int)
    assert parse_param("cohort.size=2:4", cohort_cfg).kind == "int"
    # free-form loss parameters are checked against the loss's own table (triplet here)
    assert parse_param("loss.params.margin=0.1:0.5", cohort_cfg).kind == "float"
    assert parse_param("loss.miner_params.cutoff=0.3:0.7", cohort_cfg).key == "loss.miner_params.cutoff"


@pytest.mark.parametrize("text, needle", [
    ("cohort.lamda=1:2", "--param cohort.lamda: not a config field"),
    ("data.dataset=1:2", "--param data.dataset: not a numeric config field"),
    ("cohort.view_diversity=0:1", "--param cohort.view_diversity: not a numeric config field"),
    ("abe.lambda_div=0.1:10", "--param abe.lambda_div: this run has no abe section"),
    ("data.num_workers=1:4", "--param data.num_workers: a runtime setting"),
    ("loss.params.foo=1:2", "--param loss.params.foo: loss 'triplet' has no parameter 'foo'"),
    ("seed=0:3", "--param seed:"),
    ("data.val_classes=1:3", "--param data.val_classes:"),
    ("optim.lr=1e-3:1e-5", "--param optim.lr: LOW (1e-3) must be below HIGH (1e-5)"),
    ("optim.lr=0:1e-3:log", "--param optim.lr: a log range needs LOW > 0"),
    ("optim.lr=1e-5:1e-3:ln", "--param optim.lr: the third part"),
    ("optim.lr=a:1", "--param optim.lr: LOW 'a' is not a number"),
    ("cohort.member.embedding_dim=32.5:64", "--param cohort.member.embedding_dim: an integer field"),
    ("cohort.lambda_mutual", "expected KEY=LOW:HIGH[:log]"),
])
def test_bad_params_name_the_key_in_one_line(cohort_cfg, text, needle):
    with pytest.raises(ConfigError) as exc:
        parse_param(text, cohort_cfg)
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_param_given_twice(cohort_cfg):
    with pytest.raises(ConfigError, match="--param optim.lr: given twice"):
        parse_params(["optim.lr=1e-5:1e-3", "optim.lr=1e-4:1e-2"], cohort_cfg)


def test_cli_bad_param_is_one_line_error(capsys):
    rc = main(["tune", "dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200",
               "--param", "cohort.lamda=1:2"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "cohort.lamda" in err


def test_cli_selection_of_several_runs_asks_for_row_and_dataset(capsys):
    rc = main(["tune", "dm2/table1", "--profile", "smoke", "--dataset", "cub200"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--row" in err and "--dataset" in err


def test_default_space_per_method(cohort_cfg):
    # DM²: lambda_DM² one decade either side of the row's value
    assert default_space(cohort_cfg) == [ParamSpec("cohort.lambda_mutual", 2.0, 200.0, True, "float")]
    assert primary_source(cohort_cfg) == "ensemble"
    assert default_space(_cfg("dm2/table1", "Independent")) == []  # lambda 0: nothing to tune
    # ABE: lambda_div when the divergence loss is on, nothing for the M-heads baseline without it
    assert default_space(_cfg("abe/table1", "ABE-8-512", "cars196")) == [ParamSpec("abe.lambda_div", 0.1, 10.0, True)]
    assert default_space(_cfg("abe/table1", "8-heads-512", "cars196")) == []
    # distillation: the loss's weights (RKD distance/angle, DarkRank lam), objective on the student
    rkd = _cfg("dm2/table4", "RKD-DA")
    assert default_space(rkd) == [ParamSpec("distill.params.w_distance", 2.0, 200.0, True),
                                  ParamSpec("distill.params.w_angle", 4.0, 400.0, True)]
    assert primary_source(rkd) == "student"
    assert [p.key for p in default_space(_cfg("dm2/table4", "DarkRank"))] == ["distill.params.lam"]


def test_table6_row_picks_the_dm2_run_and_its_lambda():
    catalog = Catalog()
    recipes = select(catalog, "dm2/table6")
    rows = fix_rows(catalog, recipes, ["ProxyNCA"])  # forgiving spelling of 'Proxy-NCA'
    assert rows == ["Proxy-NCA"]
    ctx = Context(profile="smoke", rows=rows, datasets=["cub200"])
    target = find_target(catalog, recipes, ctx, "dm2/table6")  # the Independent (lambda 0) run is left out
    assert default_space(target.config) == [ParamSpec("cohort.lambda_mutual", 10.0, 1000.0, True)]


# ---------------------------------------------------------------------------
# slow: smoke studies end to end (in this process; workers in spawned processes)
# ---------------------------------------------------------------------------

RUN = ["dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200",
       "--set", "cohort.size=2", "--set", "schedule.epochs=2", "--set", "schedule.iterations_per_epoch=1"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("tune_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCHMARK_HOME", str(path))
        mp.setenv("OMP_NUM_THREADS", "1")  # spawned workers
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield path
    torch.set_num_threads(threads)


def _cli(*args) -> dict:
    """main(args) in this process; its last stdout line parsed as JSON."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(args))
    assert rc == 0, err.getvalue()[-2000:]
    text = out.getvalue().strip()
    return json.loads(text.splitlines()[-1]) if text else {}


def _client(home: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{home / 'mlflow.db'}")


def _tune_runs(home: Path, study: str):
    client = _client(home)
    exp = client.get_experiment_by_name("tune")
    runs = client.search_runs([exp.experiment_id], f"tags.`bench.tune.study` = '{study}'")
    parents = [r for r in runs if r.data.tags["bench.tune.role"] == "parent"]
    trials = [r for r in runs if r.data.tags["bench.tune.role"] == "trial"]
    return parents, trials


def _study(summary: dict):
    import optuna

    from benchmark.tune.study import open_storage

    return optuna.load_study(study_name=summary["study"], storage=open_storage(summary["storage"]))


@pytest.fixture(scope="module")
def first_study(home):
    """A 2-trial study without the baseline trial (so its best lambda is a sampled one, not 20)."""
    return _cli("tune", *RUN, "--trials", "2", "--no-baseline", "--no-progress", "--format", "json")


@pytest.mark.slow
def test_study_runs_then_continues_with_trials_nested_in_mlflow(home, first_study):
    s1 = first_study
    assert s1["n_trials"] == 2 and s1["n_complete"] == 2 and s1["val_classes"] == 3  # a quarter of 12
    assert s1["best_params"].keys() == {"cohort.lambda_mutual"} and 0 <= s1["best_value"] <= 100
    assert s1["paper_values"] == {"cohort.lambda_mutual": 20.0}
    assert Path(s1["override_file"]).is_file()
    # the same command again continues the same study (same name, same MLflow parent run)
    s2 = _cli("tune", *RUN, "--trials", "1", "--no-progress", "--format", "json")
    assert s2["study"] == s1["study"] and s2["n_trials"] == 3 and s2["parent_run_id"] == s1["parent_run_id"]
    study = _study(s2)
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    parents, trials = _tune_runs(home, s1["study"])
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].data.tags["bench.tune.n_trials"] == "3"
    assert len(trials) == 3 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parents[0].info.run_id}
    by_number = {int(r.data.tags["bench.tune.trial"]): r for r in trials}
    client = _client(home)
    for t in study.trials:
        run = by_number[t.number]
        assert run.info.status == "FINISHED" and run.data.tags["bench.tune.state"] == "complete"
        assert float(run.data.params["tune.cohort.lambda_mutual"]) == pytest.approx(t.params["cohort.lambda_mutual"])
        assert run.data.params["data.val_classes"] == "3"  # trained without the held-out classes
        curve = client.get_metric_history(run.info.run_id, "val/ensemble/recall_at_1")
        curve = sorted((m.step, m.value) for m in curve)
        assert [step for step, _ in curve] == [1, 2] and curve[-1][1] == pytest.approx(t.value)
        assert t.intermediate_values.keys() == {1, 2} and t.value == pytest.approx(t.intermediate_values[2])
    assert not list((home / "tune" / s1["study"]).glob("trial-*"))  # working folders deleted


@pytest.mark.slow
def test_override_file_changes_the_runs_hash_and_logged_lambda(home, first_study):
    import yaml

    best_file = Path(first_study["override_file"])
    best = yaml.safe_load(best_file.read_text(encoding="utf-8"))
    assert best["scope"] == {"recipe": "dm2/table1", "row": "MD+TD+VD", "dataset": "cub200"}
    lam = best["set"]["cohort.lambda_mutual"]
    assert lam != 20.0
    plain = _plan(*RUN)
    tuned = _plan(*RUN, "--overrides", str(best_file))
    assert len(plain) == len(tuned) == 1 and plain[0]["hash"] != tuned[0]["hash"]
    _cli("run", *RUN, "--overrides", str(best_file), "--no-progress", "--format", "json")
    client = _client(home)
    runs = client.search_runs([client.get_experiment_by_name("dm2").experiment_id],
                              f"tags.`bench.hash` = '{tuned[0]['hash']}'")
    assert len(runs) == 1 and float(runs[0].data.params["cohort.lambda_mutual"]) == pytest.approx(lam)
    assert runs[0].data.params["data.val_classes"] == "0"  # the run itself trains on every training class


def _plan(*args) -> list:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["plan", *args, "--format", "json"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.slow
def test_two_workers_share_a_study_without_duplicates(home):
    import os

    s = _cli("tune", *RUN, "--trials", "2", "--workers", "2", "--study", "two-workers",
             "--no-progress", "--format", "json")
    assert s["n_trials"] == 2 and s["n_complete"] == 2
    study = _study(s)
    assert sorted(t.number for t in study.trials) == [0, 1]
    pids = {t.user_attrs["pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids  # one trial in each spawned worker
    baseline = [t for t in study.trials if t.user_attrs.get("baseline")]
    assert len(baseline) == 1 and baseline[0].params == {"cohort.lambda_mutual": 20.0}  # the row's own value
    parents, trials = _tune_runs(home, "two-workers")
    assert len(parents) == 1 and sorted(int(r.data.tags["bench.tune.trial"]) for r in trials) == [0, 1]


@pytest.fixture(scope="module")
def pruned_study(home):
    # below:101 prunes any trial after its first epoch (a percentage never exceeds 100)
    return _cli("tune", *RUN, "--trials", "1", "--study", "pruned", "--pruner", "below:101",
                "--prune-warmup", "1", "--no-progress", "--format", "json")


@pytest.mark.slow
def test_pruned_trial_is_pruned_in_optuna_and_killed_in_mlflow(home, pruned_study):
    from optuna.trial import TrialState

    s = pruned_study
    assert s["n_trials"] == 1 and s["n_pruned"] == 1 and s["best_params"] is None and s["override_file"] is None
    (t,) = _study(s).trials
    assert t.state == TrialState.PRUNED and list(t.intermediate_values) == [1]
    _, (run,) = _tune_runs(home, "pruned")
    assert run.info.status == "KILLED" and run.data.tags["bench.tune.state"] == "pruned"


@pytest.mark.slow
def test_report_pages_for_every_study(home, first_study, pruned_study, tmp_path):
    from benchmark.tune import report_entries

    entries = report_entries(tmp_path / "reports")
    pages = {Path(p).name for _, p in entries}
    assert {f"{first_study['study']}.md", "pruned.md"} <= pages
    first = tmp_path / "reports" / "tuning" / f"{first_study['study']}.md"
    text = first.read_text()
    assert "| `cohort.lambda_mutual` | [2, 200] log" in text and "| 20 " in text  # paper value beside the best
    assert (first.parent / first.name.replace(".md", "-history.png")).is_file()
    assert "needs at least two tuned parameters" in text
    assert "(0 complete, 1 pruned, 0 failed)" in (tmp_path / "reports" / "tuning" / "pruned.md").read_text()
