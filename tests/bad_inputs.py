"""A corpus of bad inputs: every one must end in one clean error line and a
non-zero exit, with no traceback and no hang (tests/test_bad_inputs.py).

Cases are generated from the schema (every field given values of the wrong type
or out of its range, through --set) and written by hand for files (recipes,
table files, overrides files) and flags, after the kinds of mistakes found in
review: silent coercions, ignored keys, null sections, paths that escape their
folder, non-UTF-8 files, NaN in a table, impossible shapes, unknown names.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from benchmark import config as C
from benchmark.config.keys import unwrap_optional

COHORT = ["run", "dm2/table1", "--profile", "smoke", "--row", "MD+TD+VD", "--dataset", "cub200", "--dry-run"]
ABE = ["run", "abe/table1", "--profile", "smoke", "--row", "ABE-8-512", "--dry-run"]
DISTILL = ["run", "dm2/table4", "--profile", "smoke", "--row", "RKD-DA", "--dataset", "cub200", "--dry-run"]


@dataclass
class Case:
    id: str
    argv: list[str]
    files: dict[str, Any] = field(default_factory=dict)  # project-relative path -> text, bytes or edit(text)
    env: dict[str, str] = field(default_factory=dict)


def _base(key: str) -> list[str]:
    if key.startswith("abe."):
        return ABE
    if key.startswith("distill."):
        return DISTILL
    return COHORT


def _bad_values(f: dataclasses.Field, tp: Any) -> list[str]:
    """YAML texts for --set KEY=VALUE that are wrong for a field of type ``tp``."""
    base = unwrap_optional(tp)
    origin = typing.get_origin(base)
    bounds = f.metadata.get("bounds", {})
    out: list[str] = []
    if origin is Literal:
        return ["no_such_choice", "5", "[a]"]
    if base is bool:
        return ["'false'", "1", "[true]"]
    if base is int:
        out = ["abc", "1.5", "true", "[1]"]
        if "ge" in bounds:
            out.append(str(bounds["ge"] - 1))
        if "le" in bounds:
            out.append(str(bounds["le"] + 1))
        return out
    if base is float:
        out = ["abc", "true", ".nan", ".inf"]
        if "ge" in bounds:
            out.append(str(bounds["ge"] - 1))
        if "gt" in bounds:
            out.append(str(bounds["gt"]))
        if "le" in bounds:
            out.append(str(bounds["le"] * 10 + 1))
        return out
    if base is str:
        return ["5", "[x]"]
    if origin is tuple:
        out = ["[0.5]", "abc", "[2.0, 1.0]"]
        if "gt" in bounds:
            out.append(f"[{bounds['gt']}, 0.5]")
        return out
    if origin is list:
        (item,) = typing.get_args(base)
        if item is int:
            return ["abc", "[a]", "[0]" if bounds.get("ge", 0) >= 1 else "[-1]"]
        return ["abc", "[5]"]
    if origin is dict:
        return ["[1]", "abc"]
    return []


# Fields whose wrong values are caught elsewhere than --set on these runs, or are not inputs.
_SKIP = {
    "cohort.members",  # a list of sections: its fields are reached through cohort.member.*
    "distill.teacher",  # a whole job; its fields are covered through the teacher reference
    "data.root",  # a path: any string is one (a missing folder is caught by preflight)
    "model.weights",
}


def schema_cases() -> list[Case]:
    cases: list[Case] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key = f"{prefix}{f.name}"
            tp = hints[f.name]
            section = C.keys.section_class(tp)
            if key in _SKIP or key.endswith(".weights"):
                continue
            if section is not None and dataclasses.is_dataclass(unwrap_optional(tp)):
                if not f.metadata.get("nullable") and key != "distill.teacher":
                    cases.append(Case(f"set-{key}=null", _base(key) + ["--set", f"{key}=null"]))
                walk(section, f"{key}.")
                continue
            for value in _bad_values(f, tp):
                cases.append(Case(f"set-{key}={value}", _base(key) + ["--set", f"{key}={value}"]))

    walk(C.TrainConfig, "")
    # the cohort sugar and fields of every member
    for f in dataclasses.fields(C.ModelConfig):
        if f.name == "weights":
            continue
        for value in _bad_values(f, typing.get_type_hints(C.ModelConfig)[f.name]):
            cases.append(Case(f"set-cohort.member.{f.name}={value}", COHORT + ["--set", f"cohort.member.{f.name}={value}"]))
    cases += [
        Case("set-cohort.member.arch=unknown", COHORT + ["--set", "cohort.member.arch=no_such_net"]),
        Case("set-abe.arch=unknown", ABE + ["--set", "abe.arch=no_such_net"]),
        Case("set-cohort.size=0", COHORT + ["--set", "cohort.size=0"]),
        Case("set-cohort.architectures=[]", COHORT + ["--set", "cohort.architectures=[]"]),
        Case("set-loss.params.unknown", COHORT + ["--set", "loss.params={no_such_param: 1}"]),
        Case("set-loss.params.margin=-1", COHORT + ["--set", "loss.params.margin=-1"]),
        Case("set-loss.miner_params.unknown", COHORT + ["--set", "loss.miner_params={nope: 2}"]),
        Case("set-distill.params.unknown", DISTILL + ["--set", "distill.params={nope: 2}"]),
        Case("set-data.crop_size>resize", ABE + ["--set", "data.crop_size=300"]),
        Case("set-eval.recall_ks=[1,100000]", COHORT + ["--set", "eval.recall_ks=[1, 100000]"]),
        Case("set-data.val_classes=1000", COHORT + ["--set", "data.val_classes=1000"]),
        Case("set-data.batch_size=7", COHORT + ["--set", "data.batch_size=7"]),
        Case("set-abe.embedding_dim=100", ABE + ["--set", "abe.embedding_dim=100"]),
        Case("set-selection=best_val", COHORT + ["--set", "selection=best_val"]),
        Case("set-optim.lr_schedule=step", COHORT + ["--set", "optim.lr_schedule=step"]),
        Case("set-distill.teacher_members=[9]", DISTILL + ["--set", "distill.teacher_members=[9]"]),
        Case("set-no-equals", COHORT + ["--set", "optim.lr"]),
        Case("set-empty-key", COHORT + ["--set", "=3"]),
        Case("set-unknown-key", COHORT + ["--set", "optim.lrate=1"]),
        Case("set-unknown-section", COHORT + ["--set", "optimizer.lr=1"]),
        Case("set-below-a-value", COHORT + ["--set", "optim.lr.x=1"]),
    ]
    return cases


def _edit(old: str, new: str):
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return apply


TABLE = "tables/dm2/table1.yaml"
RECIPE = "recipes/dm2/table1.yaml"
DEFAULTS = "recipes/dm2/defaults.yaml"
PLAN = ["plan", "dm2/table1", "--profile", "smoke", "--format", "json"]


def file_cases() -> list[Case]:
    first_values = "values: [66.07"
    cases = [
        # table files
        Case("table-nan", PLAN, {TABLE: _edit(first_values, "values: [.nan")}),
        Case("table-inf", PLAN, {TABLE: _edit(first_values, "values: [.inf")}),
        Case("table-negative", PLAN, {TABLE: _edit(first_values, "values: [-3")}),
        Case("table-above-100", PLAN, {TABLE: _edit(first_values, "values: [166.07")}),
        Case("table-string-value", PLAN, {TABLE: _edit(first_values, "values: [high")}),
        Case("table-cited-string", PLAN, {TABLE: _edit("cited: false", 'cited: "false"')}),
        Case("table-columns-int", PLAN, {TABLE: lambda t: t.replace("columns:", "columns: 3\ncolumns_old:", 1)}),
        Case("table-rows-mapping", PLAN, {TABLE: lambda t: t + "\nrows: {a: 1}\n"}),
        Case("table-plot-list", PLAN, {TABLE: lambda t: t + "\nplot: [1, 2]\n"}),
        Case("table-unknown-metric", PLAN, {TABLE: _edit("metric: recall@1", "metric: accuracy")}),
        Case("table-unknown-dataset", PLAN, {TABLE: _edit("dataset: cub200", "dataset: imagenet")}),
        Case("table-non-utf8", PLAN, {TABLE: lambda t: t.encode("utf-8") + b"\n# \xff\xfe\n"}),
        Case("table-bad-yaml", PLAN, {TABLE: lambda t: t + "\n  - [unclosed\n"}),
        Case("table-not-mapping", PLAN, {TABLE: "- 1\n- 2\n"}),
        Case("table-duplicate-row", PLAN, {TABLE: lambda t: t + t[t.index("  - name:"):]}),
        Case("table-empty-file", PLAN, {TABLE: ""}),
        # recipe files
        Case("recipe-non-utf8", PLAN, {RECIPE: lambda t: t.encode("utf-8") + b"\n# \xc3\x28\n"}),
        Case("recipe-table-escapes", PLAN, {RECIPE: lambda t: "table: ../../../etc/passwd\n" + t}),
        Case("recipe-table-unknown", PLAN, {RECIPE: lambda t: "table: dm2/table99\n" + t}),
        Case("recipe-extends-itself", PLAN, {RECIPE: _edit("extends: defaults", "extends: table1")}),
        Case("recipe-extends-escapes", PLAN, {RECIPE: _edit("extends: defaults", "extends: ../../x")}),
        Case("recipe-unknown-top-key", PLAN, {RECIPE: lambda t: t + "\nsettings: {a: 1}\n"}),
        Case("recipe-rows-list", PLAN, {RECIPE: lambda t: t.replace("rows:", "rows_old:", 1) + "\nrows: [a]\n"}),
        Case("recipe-set-list", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: [1]}")}),
        Case("recipe-unknown-row", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {}\n  Nope: {}")}),
        Case("recipe-null-section", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: {cohort: null}}")}),
        Case("recipe-sets-seed", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: {seed: 5}}")}),
        Case("recipe-sets-dataset", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: {data.dataset: sop}}")}),
        Case("recipe-sets-device", PLAN, {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: {device: cuda}}")}),
        Case("recipe-assumed-unknown", PLAN, {RECIPE: lambda t: t.replace("assumed:", "assumed:\n  no.such.key: why", 1)}),
        Case("recipe-profile-models-list", PLAN,
             {DEFAULTS: _edit("    models: {pretrained: false, freeze_bn: false}", "    models: [pretrained]")}),
        Case("recipe-profile-models-string-bool", PLAN,
             {DEFAULTS: _edit("models: {pretrained: false,", 'models: {pretrained: "false",')}),
        Case("recipe-profile-unknown-model-field", PLAN,
             {DEFAULTS: _edit("models: {pretrained: false,", "models: {depth: 3, pretrained: false,")}),
        Case("recipe-dataset-block-unknown", PLAN, {RECIPE: lambda t: t + "\ndatasets:\n  imagenet: {}\n"}),
        Case("recipe-teacher-ref-unknown", PLAN,
             {RECIPE: _edit("  MD+TD+VD: {}", "  MD+TD+VD: {set: {method: distill, distill.teacher: {ref: 'dm2/nope#X'}}}")}),
        # overrides files
        Case("overrides-missing", COHORT + ["--overrides", "/nonexistent/over.yaml"]),
        Case("overrides-non-utf8", COHORT + ["--overrides", "over.yaml"], {"over.yaml": b"optim.lr: 1e-4 # \xff\n"}),
        Case("overrides-list", COHORT + ["--overrides", "over.yaml"], {"over.yaml": "- optim.lr\n"}),
        Case("overrides-unknown-key", COHORT + ["--overrides", "over.yaml"], {"over.yaml": "optim.lrate: 1\n"}),
        Case("overrides-bad-scope", COHORT + ["--overrides", "over.yaml"],
             {"over.yaml": "scope: {recipe: dm2/table1}\nset: {optim.lr: 1e-4}\n"}),
        Case("overrides-scope-extra-key", COHORT + ["--overrides", "over.yaml"],
             {"over.yaml": "scope: {recipe: dm2/table1, row: MD}\nset: {}\nother: 1\n"}),
        Case("overrides-scope-matches-nothing", COHORT + ["--overrides", "over.yaml"],
             {"over.yaml": "scope: {recipe: dm2/table1, row: MD, dataset: sop}\nset: {optim.lr: 1e-4}\n"}),
        Case("overrides-folder", COHORT + ["--overrides", "recipes"]),
        Case("overrides-seed", COHORT + ["--overrides", "over.yaml"], {"over.yaml": "seed: 3\n"}),
        Case("overrides-null-data", COHORT + ["--overrides", "over.yaml"], {"over.yaml": "data: null\n"}),
    ]
    return cases


def flag_cases() -> list[Case]:
    return [
        Case("flag-seeds-huge", COHORT + ["--seeds", "100000"]),
        Case("flag-seeds-zero", COHORT + ["--seeds", "0"]),
        Case("flag-threads-negative", COHORT + ["--threads", "-1"]),
        Case("flag-selector-escape", ["plan", "dm2/../../etc/passwd", "--profile", "smoke"]),
        Case("flag-selector-unknown-glob", ["plan", "dm2/zz*", "--profile", "smoke"]),
        Case("flag-selector-defaults", ["plan", "dm2/defaults", "--profile", "smoke"]),
        Case("flag-selector-empty", ["plan", ",", "--profile", "smoke"]),
        Case("flag-profile-unknown", ["plan", "dm2/table1", "--profile", "fast"]),
        Case("flag-row-unknown", COHORT[:-1] + ["--row", "Nope"]),
        Case("flag-data-root-missing", ["run", "dm2/table1", "--data-root", "/nonexistent/data", "--dry-run"]),
        Case("flag-no-data-root", ["run", "dm2/table1", "--row", "MD+TD+VD", "--dataset", "cub200", "--dry-run"]),
        Case("report-selector-escape", ["report", "../../etc/passwd", "--profile", "smoke"]),
        Case("report-out-unwritable", ["report", "dm2/table1", "--profile", "smoke", "--all", "--out", "/proc/nope"]),
        Case("report-profile-quote", ["report", "dm2/table1", "--profile", "sm'oke", "--format", "json"]),
        Case("paper-selector-escape", ["paper", "dm2/../../x"]),
        Case("stats-unknown", ["stats", "abe/table99"]),
        Case("tune-no-run", ["tune", "dm2/table1", "--profile", "smoke", "--trials", "1"]),
        Case("tune-bad-param", ["tune", "dm2/table6", "--profile", "smoke", "--row", "Proxy-NCA", "--dataset",
                                "cub200", "--param", "optim.lr=1:0"]),
        Case("tune-workers-zero", ["tune", "dm2/table6", "--profile", "smoke", "--row", "Proxy-NCA", "--dataset",
                                   "cub200", "--workers", "0"]),
        Case("data-check-missing-root", ["data", "check", "--data-root", "/nonexistent"]),
        Case("data-check-empty-root", ["data", "check", "--data-root", "."]),
        Case("tracking-server-unreachable", ["plan", "dm2/table1", "--profile", "smoke", "--row", "MD"],
             env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}),
    ]


def all_cases() -> list[Case]:
    return schema_cases() + file_cases() + flag_cases()
