"""A user's mistake in a recipe or an override is one line that names the file and key.

Every test builds a small project of its own (tables/ + recipes/ under tmp_path)
and expands it; nothing is trained.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from benchmark.errors import ConfigError, UserError
from benchmark.recipes import Catalog, Context, expand, override_layer, select

TABLE = """\
paper: p
id: t
kind: table
title: a small table
columns:
  - {id: cub_a, group: G1, header: A, dataset: cub200, metric: recall@1, source: member1}
  - {id: cub_e, group: G2, header: E, dataset: cub200, metric: recall@1, source: ensemble}
rows:
  - {name: Solo, values: [1.0, null]}
  - {name: Pair, values: [2.0, 3.0]}
  - {name: Quoted, cited: true, values: [4.0, 5.0]}
"""

DEFAULTS = """\
config:
  method: cohort
  data: {batch_size: 40, images_per_class: 5}
  cohort: {size: 2, member: {arch: tiny_inception, pretrained: false}}
  schedule: {epochs: 2}
assumed:
  schedule.epochs: a guess
profiles:
  smoke:
    set: {schedule.epochs: 1}
"""

RECIPE = """\
extends: defaults
rows:
  Solo:
    set: {cohort.size: 1}
  Pair: {}
"""


def project(tmp_path: Path, recipe: str = RECIPE, defaults: str = DEFAULTS) -> Catalog:
    (tmp_path / "tables" / "p").mkdir(parents=True)
    (tmp_path / "recipes" / "p").mkdir(parents=True)
    (tmp_path / "tables" / "p" / "t.yaml").write_text(TABLE, encoding="utf-8")
    (tmp_path / "recipes" / "p" / "defaults.yaml").write_text(defaults, encoding="utf-8")
    (tmp_path / "recipes" / "p" / "t.yaml").write_text(textwrap.dedent(recipe), encoding="utf-8")
    return Catalog(root=tmp_path)


def expand_all(catalog: Catalog, **ctx) -> list:
    return expand(catalog, select(catalog, "p"), Context(**ctx))


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    assert isinstance(info.value, ConfigError)
    msg = str(info.value)
    assert "\n" not in msg and msg.strip() == msg, f"not one line: {msg!r}"
    return msg


def test_the_small_project_expands(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_PROJECT", str(tmp_path))
    project(tmp_path)
    catalog = Catalog()  # found through BENCHMARK_PROJECT
    specs = expand_all(catalog, profile="smoke")
    assert [len(s.config.cohort.members) for s in specs] == [1, 2]
    assert all(s.config.schedule.epochs == 1 for s in specs)


@pytest.mark.parametrize(
    "recipe, expect",
    [
        # unknown key at the top of a recipe
        (RECIPE + "colour: blue\n", ["t.yaml", "colour: unknown key"]),
        # unknown config key in a row's set (dotted)
        ("extends: defaults\nrows:\n  Solo: {set: {cohort.lamda_mutual: 1}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.set.cohort.lamda_mutual: unknown key", "lambda_mutual"]),
        # unknown config key, nested form
        ("extends: defaults\nrows:\n  Solo: {set: {optim: {learning_rate: 1}}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.set.optim.learning_rate: unknown key"]),
        # bad type
        ("extends: defaults\nrows:\n  Solo: {set: {data.batch_size: big}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.set.data.batch_size", "expected an integer", "'big'"]),
        # bad choice
        ("extends: defaults\nrows:\n  Solo: {set: {loss.name: hinge}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.set.loss.name", "'hinge'"]),
        # a row the table does not have
        (RECIPE + "  Trio: {}\n", ["t.yaml", "rows.Trio", "not a row of"]),
        # a row of the table without a recipe
        ("extends: defaults\nrows:\n  Solo: {}\n", ["t.yaml", "no recipe for row 'Pair'"]),
        # a cited row
        (RECIPE + "  Quoted: {}\n", ["t.yaml", "rows.Quoted", "cited"]),
        # unknown key in a row and in a run binding
        ("extends: defaults\nrows:\n  Solo: {sett: {}}\n  Pair: {}\n", ["t.yaml", "rows.Solo.sett: unknown key"]),
        ("extends: defaults\nrows:\n  Solo: {runs: [{wher: {}}]}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.runs[0].wher: unknown key"]),
        # a malformed teacher reference
        ("extends: defaults\nrows:\n  Solo: {set: {method: distill, distill.teacher: {ref: p/t}}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.set.distill.teacher.ref", "paper/table#Row"]),
        ("extends: defaults\nrows:\n  Solo: {set: {distill.teacher: {ref: 'p/t#Pair', sett: {}}}}\n  Pair: {}\n",
         ["t.yaml", "distill.teacher.sett: unknown key"]),
        # profile, datasets, assumed, extends
        (RECIPE + "profiles:\n  smoke: {sett: {}}\n", ["t.yaml", "profiles.smoke.sett: unknown key"]),
        (RECIPE + "profiles:\n  smoke: {datasets: {mnist: {}}}\n", ["t.yaml", "profiles.smoke.datasets.mnist", "unknown dataset"]),
        (RECIPE + "profiles:\n  smoke: {datasets: {sop: {data.batchsize: 4}}}\n",
         ["t.yaml", "profiles.smoke.datasets.sop.data.batchsize: unknown key"]),
        (RECIPE + "profiles:\n  smoke: {models: {colour: red}}\n", ["t.yaml", "profiles.smoke.models.colour"]),
        (RECIPE + "datasets:\n  mnist: {}\n", ["t.yaml", "datasets.mnist: unknown dataset"]),
        (RECIPE + "datasets:\n  sop: {cohort.sise: 3}\n", ["t.yaml", "datasets.sop.cohort.sise: unknown key"]),
        (RECIPE + "assumed:\n  optim.learning_rate: why\n", ["t.yaml", "assumed.optim.learning_rate: not a config key"]),
        (RECIPE.replace("extends: defaults", "extends: basics"), ["t.yaml", "extends", "p/basics"]),
        # sections given as lists
        (RECIPE + "datasets: [sop]\n", ["t.yaml", "datasets: expected a mapping"]),
        (RECIPE + "assumed: [x]\n", ["t.yaml", "assumed: expected a mapping"]),
        (RECIPE + "profiles: [smoke]\n", ["t.yaml", "profiles: expected a mapping"]),
        # invalid YAML
        ("extends: defaults\nrows:\n  Solo: {set: {\n  Pair: {}\n", ["t.yaml", "line", "invalid YAML"]),
    ],
)
def test_recipe_mistakes_are_one_line_naming_file_and_key(tmp_path, recipe, expect):
    catalog = project(tmp_path, recipe)
    msg = error_of(expand_all, catalog)
    for part in expect:
        assert part in msg, f"{part!r} not in {msg!r}"


@pytest.mark.parametrize(
    "recipe, expect",
    [
        # a reference to a row that does not exist / a recipe that does not exist
        ("extends: defaults\nrows:\n  Solo: {set: {method: distill, distill.teacher: {ref: 'p/t#Nope'}}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo", "distill.teacher.ref", "no row 'Nope'"]),
        ("extends: defaults\nrows:\n  Solo: {set: {method: distill, distill.teacher: {ref: 'p/zz#Solo'}}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo", "no recipe 'p/zz'"]),
        # a where that names no column attribute / matches no column
        ("extends: defaults\nrows:\n  Solo: {runs: [{where: {colour: red}}]}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.runs[0].where.colour", "not a column attribute"]),
        ("extends: defaults\nrows:\n  Solo: {runs: [{where: {group: G9}}]}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo.runs[0].where", "matches no column"]),
        # a merged config that breaks a cross-field rule
        ("extends: defaults\nrows:\n  Solo: {set: {data.batch_size: 42}}\n  Pair: {}\n",
         ["t.yaml", "rows.Solo", "data.batch_size", "not a multiple"]),
    ],
)
def test_mistakes_found_when_expanding(tmp_path, recipe, expect):
    catalog = project(tmp_path, recipe)
    msg = error_of(expand_all, catalog)
    for part in expect:
        assert part in msg, f"{part!r} not in {msg!r}"


def test_a_good_teacher_reference_resolves(tmp_path):
    recipe = "extends: defaults\nrows:\n  Solo: {set: {method: distill, distill.teacher: {ref: 'p/t#Pair', set: {cohort.size: 3}}}}\n  Pair: {}\n"
    specs = expand_all(project(tmp_path, recipe))
    student = next(s for s in specs if s.config.method == "distill")
    assert len(student.config.distill.teacher.cohort.members) == 3
    assert specs.index(student.teacher) < specs.index(student)


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("cohort.lamda_mutual", 1.0, "--set cohort.lamda_mutual: unknown key"),
        ("optim", {"learning_rate": 1}, "--set optim.learning_rate: unknown key"),
        ("data.batch_size", "big", "--set data.batch_size: expected an integer"),
        ("selection", "best", "--set selection: expected one of"),
    ],
)
def test_bad_set_overrides(key, value, expect):
    msg = error_of(override_layer, key, value, f"--set {key}")
    assert msg.startswith(expect), msg


def test_bad_override_breaks_a_merged_rule(tmp_path):
    catalog = project(tmp_path)
    ctx = {"overrides": [override_layer("data.images_per_class", 7, "--set data.images_per_class")]}
    msg = error_of(expand_all, catalog, **ctx)
    assert "data.batch_size" in msg and "images_per_class=7" in msg
    assert "with --set data.images_per_class" in msg  # the override is named, not only the recipe


def test_unknown_profile_and_selector(tmp_path):
    catalog = project(tmp_path)
    msg = error_of(expand_all, catalog, profile="fast")
    assert "profile 'fast'" in msg and "smoke" in msg
    assert "no such recipe" in error_of(select, catalog, "p/t9")
    assert "no such paper" in error_of(select, catalog, "q")
    assert "matches no recipe" in error_of(select, catalog, "p/x*")
    assert "has no such profile" in error_of(select, catalog, "p", "fast")


def test_selectors_bare_names_and_globs():
    """The mission's own example, `run table1`, selects Table 1 of every paper; globs
    select over 'paper/name'; a defaults file is no table to run."""
    catalog = Catalog()
    names = lambda sel: [r.name for r in select(catalog, sel)]  # noqa: E731
    assert names("table1") == ["abe/table1", "dm2/table1"]
    assert names("dm2/table*") == [f"dm2/table{i}" for i in range(1, 7)]
    assert names("*/figure5") == ["abe/figure5"]
    assert names("figure7?") == ["abe/figure7a", "abe/figure7b", "abe/figure7c"]
    assert names("dm2/table1,table1") == ["dm2/table1", "abe/table1"]
    assert len(names("all")) == len(names("dm2")) + len(names("abe")) == 20
    assert "defaults file" in error_of(select, catalog, "dm2/defaults")
    assert "no such paper or recipe" in error_of(select, catalog, "table99")


@pytest.mark.parametrize(
    "row, expect",
    [
        ("{name: Solo, values: [a, null]}", "rows[0].values: 'a' is not a number"),
        ("{name: Solo, values: 3}", "rows[0].values: not a list of values for 2 columns"),
        ("{name: Solo, values: [1.0, null], stds: 4}", "rows[0].stds: not a list of values"),
        ("{name: Solo, values: [1.0, null], labels: [1]}", "rows[0].labels: expected a mapping"),
    ],
)
def test_table_file_mistakes_are_one_line(tmp_path, row, expect):
    catalog = project(tmp_path)
    table = tmp_path / "tables" / "p" / "t.yaml"
    table.write_text(TABLE.replace("  - {name: Solo, values: [1.0, null]}", "  - " + row), encoding="utf-8")
    msg = error_of(expand_all, catalog)
    assert "t.yaml" in msg and expect in msg, msg
