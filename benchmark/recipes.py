"""Recipes: a declarative configuration for every row of every paper table.

Format: recipes/README.md. A recipe binds the rows of one table file to training
jobs; :func:`expand` resolves a selection of recipes under a profile, seeds and
overrides into deduplicated :class:`~benchmark.spec.RunSpec` objects.

Layers, in the order they are merged (later wins):
  1. `config` of every file in the `extends` chain, root first
  2. `datasets.<dataset>` of every file in the chain
  3. the row's (or run binding's) `set`
  4. for a teacher reference, the reference's `set`
  5. the profile's `set`, then its `datasets.<dataset>` block (every file in the
     chain that defines the profile, root first)
  6. overrides: `--overrides FILE`, then `--set key=value`
  7. data.dataset / data.cropped from the table columns, and the seed
Then recipe sugar is expanded, the result validated, and the profile's
`arch_map` / `models` applied to every model in the job.

Layers merge key by key (:func:`benchmark.layers.merge_layer`), except that a
layer switching `loss.name`, `loss.miner` or `distill.loss` to another value
starts that choice's free-form parameters afresh.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from benchmark import config as C
from benchmark.errors import ConfigError
from benchmark.layers import check_layer, expand_dotted, expand_sugar, get_path, merge, merge_layer
from benchmark.spec import Cell, RunSpec
from benchmark.tables import DATASETS, Column, Table, load_table
from benchmark.yamlio import load_yaml

PAPER_PROFILE = "paper"


def project_root() -> Path:
    """The folder holding recipes/ and tables/ (BENCHMARK_PROJECT overrides)."""
    env = os.environ.get("BENCHMARK_PROJECT")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    if (here / "recipes").is_dir() and (here / "tables").is_dir():
        return here
    return Path.cwd()


# ---------------------------------------------------------------------------
# Recipe files
# ---------------------------------------------------------------------------


@dataclass
class Binding:
    """A run (per dataset and seed) filling the columns that `where` selects."""

    where: dict[str, Any]
    set: dict[str, Any]
    sources: dict[str, str]
    label: str  # for error messages: "<file>: rows.<row>.runs[i]"
    row: str = ""  # the row's name


@dataclass
class RowRecipe:
    name: str
    bindings: list[Binding]
    note: str = ""


@dataclass
class Profile:
    name: str
    description: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    arch_map: dict[str, str] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-dataset `set`


@dataclass
class Recipe:
    name: str  # "dm2/table1", "dm2/defaults"
    path: Path
    paper: str
    parent: Optional["Recipe"]
    table_key: Optional[str]
    description: str
    config: dict[str, Any]
    datasets: dict[str, dict[str, Any]]
    rows: dict[str, RowRecipe]
    assumed: dict[str, str]
    profiles: dict[str, Profile]

    def chain(self) -> list["Recipe"]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    @property
    def runnable(self) -> bool:
        return self.table_key is not None

    def all_assumed(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for r in self.chain():
            out.update(r.assumed)
        return out

    def profile_names(self) -> list[str]:
        names = {PAPER_PROFILE}
        for r in self.chain():
            names.update(r.profiles)
        return sorted(names)

    def profile_layers(self, name: str) -> list[Profile]:
        if name not in self.profile_names():
            raise ConfigError(
                f"{self.path}: profile '{name}' is not defined (known: {', '.join(self.profile_names())})"
            )
        return [r.profiles[name] for r in self.chain() if name in r.profiles]

    def profile_description(self, name: str) -> str:
        texts = [p.description for p in self.profile_layers(name) if p.description]
        return " ".join(texts)


_RECIPE_KEYS = {"extends", "table", "description", "config", "datasets", "rows", "assumed", "profiles"}
_ROW_KEYS = {"set", "sources", "note", "runs"}
_RUN_KEYS = {"where", "set", "sources", "note"}
_PROFILE_KEYS = {"description", "set", "datasets", "arch_map", "models"}
_MODEL_FIELDS = {f.name for f in dataclasses.fields(C.ModelConfig)} | {
    f.name for f in dataclasses.fields(C.ABEConfig)
}


def key_exists(dotted: str) -> bool:
    """Whether `dotted` names a field of TrainConfig (or recipe sugar)."""
    import typing

    cls: Any = C.TrainConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        if cls is C.CohortConfig and part in ("size", "member", "architectures"):
            cls = C.ModelConfig if part == "member" else None
            continue
        if cls is None or not dataclasses.is_dataclass(cls):
            return False
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return False
        tp = hints[part]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) is dict:
            return True  # free-form parameters below
        if args and dataclasses.is_dataclass(args[0]) and typing.get_origin(tp) is not list:
            tp = args[0]
        if typing.get_origin(tp) is list and typing.get_args(tp) and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            tp = typing.get_args(tp)[0]
        cls = tp if dataclasses.is_dataclass(tp) else None
        if cls is None and i < len(parts) - 1:
            return False
    return True


def _layer(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {value!r}")
    layer = expand_dotted(value, f"{where}.")
    check_layer(layer, where)
    return layer


def _parse_profile(name: str, data: Any, where: str) -> Profile:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in data:
        if key not in _PROFILE_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(_PROFILE_KEYS))})")
    models = dict(data.get("models") or {})
    for key in models:
        if key not in _MODEL_FIELDS:
            raise ConfigError(f"{where}.models.{key}: not a model field")
    arch_map = data.get("arch_map") or {}
    if not isinstance(arch_map, dict):
        raise ConfigError(f"{where}.arch_map: expected a mapping of architecture names")
    raw_datasets = data.get("datasets") or {}
    if not isinstance(raw_datasets, dict):
        raise ConfigError(f"{where}.datasets: expected a mapping of dataset -> layer")
    datasets = {}
    for ds, layer in raw_datasets.items():
        if ds not in DATASETS:
            raise ConfigError(f"{where}.datasets.{ds}: unknown dataset (known: {', '.join(DATASETS)})")
        datasets[ds] = _layer(layer, f"{where}.datasets.{ds}")
    return Profile(
        name=name,
        description=str(data.get("description", "")).strip(),
        set=_layer(data.get("set"), f"{where}.set"),
        arch_map={str(k): str(v) for k, v in arch_map.items()},
        models=models,
        datasets=datasets,
    )


def _parse_sources(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of column source -> logged source")
    return {str(k): str(v) for k, v in value.items()}


def _parse_row(name: str, data: Any, where: str) -> RowRecipe:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping")
    for key in data:
        if key not in _ROW_KEYS:
            raise ConfigError(f"{where}.{key}: unknown key (known: {', '.join(sorted(_ROW_KEYS))})")
    if "runs" in data:
        if "set" in data or "sources" in data:
            raise ConfigError(f"{where}: give either runs or set/sources, not both")
        runs = data["runs"]
        if not isinstance(runs, list) or not runs:
            raise ConfigError(f"{where}.runs: expected a non-empty list")
        bindings = []
        for i, run in enumerate(runs):
            rw = f"{where}.runs[{i}]"
            if not isinstance(run, dict):
                raise ConfigError(f"{rw}: expected a mapping")
            for key in run:
                if key not in _RUN_KEYS:
                    raise ConfigError(f"{rw}.{key}: unknown key (known: {', '.join(sorted(_RUN_KEYS))})")
            where_ = run.get("where") or {}
            if not isinstance(where_, dict):
                raise ConfigError(f"{rw}.where: expected a mapping of column attribute -> value")
            bindings.append(Binding(
                where=where_, set=_layer(run.get("set"), f"{rw}.set"),
                sources=_parse_sources(run.get("sources"), f"{rw}.sources"), label=rw, row=name,
            ))
    else:
        bindings = [Binding(
            where={}, set=_layer(data.get("set"), f"{where}.set"),
            sources=_parse_sources(data.get("sources"), f"{where}.sources"), label=where, row=name,
        )]
    return RowRecipe(name=name, bindings=bindings, note=str(data.get("note", "")).strip())


class Catalog:
    """All recipes and table files of a project folder, loaded on demand."""

    def __init__(self, root: Optional[Path] = None):
        self.root = Path(root) if root is not None else project_root()
        self.recipes_dir = self.root / "recipes"
        self.tables_dir = self.root / "tables"
        self._recipes: dict[str, Recipe] = {}
        self._tables: dict[str, Table] = {}

    # -- lookup --------------------------------------------------------------
    def recipe_names(self) -> list[str]:
        names = []
        for path in sorted(self.recipes_dir.glob("*/*.yaml")):
            names.append(f"{path.parent.name}/{path.stem}")
        return names

    def runnable_names(self) -> list[str]:
        return [n for n in self.recipe_names() if self.recipe(n).runnable]

    def papers(self) -> list[str]:
        return sorted({n.split("/")[0] for n in self.recipe_names()})

    def select(self, selector: str) -> list[Recipe]:
        """'dm2/table1', 'dm2' (every table of a paper), 'all', or a comma list."""
        out: list[Recipe] = []
        for part in [s.strip() for s in selector.split(",") if s.strip()]:
            if part == "all":
                names = self.runnable_names()
            elif "/" in part:
                if part not in self.recipe_names():
                    raise ConfigError(
                        f"{part}: no such recipe (no file {self.recipes_dir / (part + '.yaml')}); "
                        f"known: {', '.join(self.runnable_names())}"
                    )
                names = [part]
            else:
                names = [n for n in self.runnable_names() if n.split("/")[0] == part]
                if not names:
                    raise ConfigError(
                        f"{part}: no such paper or recipe (known papers: {', '.join(self.papers())})"
                    )
            for name in names:
                recipe = self.recipe(name)
                if not recipe.runnable:
                    raise ConfigError(f"{recipe.path}: a defaults file has no table to run")
                if recipe not in out:
                    out.append(recipe)
        if not out:
            raise ConfigError(f"'{selector}': selects no recipe")
        return out

    def table(self, key: str) -> Table:
        if key not in self._tables:
            path = self.tables_dir / f"{key}.yaml"
            if not path.exists():
                raise ConfigError(f"{path}: table file not found")
            table = load_table(path)
            if table.key != key:
                raise ConfigError(f"{path}: paper/id say '{table.key}', expected '{key}'")
            self._tables[key] = table
        return self._tables[key]

    def tables(self) -> list[Table]:
        return [self.table(f"{p.parent.name}/{p.stem}") for p in sorted(self.tables_dir.glob("*/*.yaml"))]

    def recipe(self, name: str, _seen: tuple = ()) -> Recipe:
        if name in self._recipes:
            return self._recipes[name]
        if name in _seen:
            raise ConfigError(f"{self.recipes_dir / (name + '.yaml')}: extends itself ({' -> '.join(_seen + (name,))})")
        path = self.recipes_dir / f"{name}.yaml"
        data = load_yaml(path)
        where = str(path)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping at the top level")
        for key in data:
            if key not in _RECIPE_KEYS:
                raise ConfigError(f"{where}: {key}: unknown key (known: {', '.join(sorted(_RECIPE_KEYS))})")
        paper = name.split("/")[0]
        parent = None
        if data.get("extends"):
            ext = str(data["extends"])
            if "/" not in ext:
                ext = f"{paper}/{ext}"
            if ext not in self.recipe_names():
                raise ConfigError(f"{where}: extends: no recipe '{ext}'")
            parent = self.recipe(ext, _seen + (name,))
        table_key = data.get("table")
        if table_key is None and data.get("rows") is not None:
            table_key = name
        for section in ("datasets", "assumed", "profiles"):
            if not isinstance(data.get(section) or {}, dict):
                raise ConfigError(f"{where}: {section}: expected a mapping")
        datasets = {}
        for ds, layer in (data.get("datasets") or {}).items():
            if ds not in ("cub200", "cars196", "sop", "inshop"):
                raise ConfigError(f"{where}: datasets.{ds}: unknown dataset")
            datasets[ds] = _layer(layer, f"{where}: datasets.{ds}")
        assumed = {}
        for key, why in (data.get("assumed") or {}).items():
            if not key_exists(str(key)):
                raise ConfigError(f"{where}: assumed.{key}: not a config key")
            assumed[str(key)] = str(why).strip()
        profiles = {
            str(pname): _parse_profile(str(pname), pdata, f"{where}: profiles.{pname}")
            for pname, pdata in (data.get("profiles") or {}).items()
        }
        rows = {}
        raw_rows = data.get("rows") or {}
        if not isinstance(raw_rows, dict):
            raise ConfigError(f"{where}: rows: expected a mapping of row name -> recipe")
        for row_name, row_data in raw_rows.items():
            rows[str(row_name)] = _parse_row(str(row_name), row_data, f"{where}: rows.{row_name}")
        recipe = Recipe(
            name=name, path=path, paper=paper, parent=parent, table_key=table_key,
            description=str(data.get("description", "")).strip(),
            config=_layer(data.get("config"), f"{where}: config"),
            datasets=datasets, rows=rows, assumed=assumed, profiles=profiles,
        )
        if recipe.runnable:
            self._check_rows(recipe)
        self._recipes[name] = recipe
        return recipe

    def _check_rows(self, recipe: Recipe) -> None:
        table = self.table(recipe.table_key)
        own = [r.name for r in table.rows if not r.cited]
        for name in recipe.rows:
            if name not in [r.name for r in table.rows]:
                raise ConfigError(f"{recipe.path}: rows.{name}: not a row of {table.path}")
            if table.row(name).cited:
                raise ConfigError(f"{recipe.path}: rows.{name}: a cited row is never run")
        for name in own:
            if name not in recipe.rows:
                raise ConfigError(f"{recipe.path}: rows: no recipe for row '{name}' of {table.path}")


# ---------------------------------------------------------------------------
# Expansion into run specs
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The one run an override applies to: a recipe's row (one of its runs, by
    ``where``, when the row has several) on one dataset. Written by `tune`, so
    a tuned value reaches only the run it was tuned for, not e.g. the λ-0
    Independent run of the same row."""

    recipe: str
    row: str
    dataset: Optional[str] = None
    where: Optional[str] = None  # the run's `where`, as canonical JSON
    cropped: Optional[bool] = None

    def matches(self, recipe: str, binding: "Binding", dataset: str, cropped: bool) -> bool:
        if (recipe, binding.row) != (self.recipe, self.row):
            return False
        if self.dataset is not None and dataset != self.dataset:
            return False
        if self.cropped is not None and cropped != self.cropped:
            return False
        return self.where is None or _canonical(binding.where) == self.where

    def describe(self) -> str:
        where = f" {self.where}" if self.where else ""
        data = f" on {self.dataset}" if self.dataset else ""
        return f"{self.recipe} row {self.row}{where}{data}{' cropped' if self.cropped else ''}"


def _canonical(where: dict) -> str:
    return json.dumps(where, sort_keys=True, ensure_ascii=False)


def parse_scope(data: Any, origin: str) -> Scope:
    """A ``scope:`` mapping of an overrides file -> :class:`Scope` (one-line errors)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping with recipe, row and optionally dataset, where")
    unknown = set(data) - {"recipe", "row", "dataset", "where", "cropped"}
    if unknown:
        raise ConfigError(f"{origin}.{sorted(unknown)[0]}: unknown key (known: cropped, dataset, recipe, row, where)")
    if data.get("cropped") is not None and not isinstance(data["cropped"], bool):
        raise ConfigError(f"{origin}.cropped: expected true or false")
    for key in ("recipe", "row"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{origin}.{key}: required, a name")
    where = data.get("where")
    if where is not None and not isinstance(where, dict):
        raise ConfigError(f"{origin}.where: expected a mapping of column attribute -> value")
    dataset = data.get("dataset")
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"{origin}.dataset: expected a dataset name")
    return Scope(recipe=data["recipe"], row=data["row"], dataset=dataset,
                 where=_canonical(where) if where else None, cropped=data.get("cropped"))


@dataclass
class Context:
    profile: str = PAPER_PROFILE
    seeds: list[int] = field(default_factory=lambda: [0])
    # (origin, layer), or (origin, layer, scope) for a layer that applies only
    # to the runs its Scope matches; applied in order.
    overrides: list[tuple] = field(default_factory=list)
    data_root: Optional[str] = None
    rows: Optional[list[str]] = None
    datasets: Optional[list[str]] = None


def override_layer(key: str, value: Any, origin: str) -> tuple[str, dict[str, Any]]:
    """One `--set key=value` (or override-file entry) as a checked layer.

    Errors read "<origin><rest of the key path>: <problem>" when `origin` ends
    with the key ("--set cohort.lamda: unknown key ..."), else "<origin>: <problem>".
    """
    layer = expand_dotted({key: value}, f"{origin}: ")
    try:
        check_layer(layer, "")
    except ConfigError as exc:
        msg = str(exc)
        if origin.endswith(key) and msg.startswith(key):
            raise ConfigError(origin + msg[len(key):]) from None
        raise ConfigError(f"{origin}: {msg}") from None
    return origin, layer


def _apply_models(cfg: C.TrainConfig, profiles: list[Profile]) -> C.TrainConfig:
    arch_map: dict[str, str] = {}
    models: dict[str, Any] = {}
    for p in profiles:
        arch_map.update(p.arch_map)
        models.update(p.models)

    def fix(obj: Any) -> Any:
        updates = {}
        if obj.arch in arch_map:
            updates["arch"] = arch_map[obj.arch]
        for k, v in models.items():
            if hasattr(obj, k):
                updates[k] = v
        return dataclasses.replace(obj, **updates) if updates else obj

    def walk(c: C.TrainConfig) -> C.TrainConfig:
        c = dataclasses.replace(c)
        if c.cohort is not None:
            c.cohort = dataclasses.replace(c.cohort, members=[fix(m) for m in c.cohort.members])
        if c.abe is not None:
            c.abe = fix(c.abe)
        if c.distill is not None:
            c.distill = dataclasses.replace(
                c.distill, student=fix(c.distill.student),
                teacher=walk(c.distill.teacher) if c.distill.teacher is not None else None,
            )
        return c

    if not arch_map and not models:
        return cfg
    return walk(cfg)


def _set_root(cfg: C.TrainConfig, data_root: Optional[str]) -> C.TrainConfig:
    if data_root is None:
        return cfg
    cfg = dataclasses.replace(cfg)
    if cfg.data.synthetic is None:
        cfg.data = dataclasses.replace(cfg.data, root=str(data_root))
    if cfg.distill is not None and cfg.distill.teacher is not None:
        cfg.distill = dataclasses.replace(cfg.distill, teacher=_set_root(cfg.distill.teacher, data_root))
    return cfg


class Resolver:
    """Resolves recipe rows into validated configs for one context."""

    def __init__(self, catalog: Catalog, ctx: Context):
        self.catalog = catalog
        self.ctx = ctx
        self.scopes_used: set[Scope] = set()  # scoped overrides that matched a run

    def merged(self, recipe: Recipe, binding: Binding, dataset: str, cropped: bool, seed: int,
               extra: Iterable[dict] = (), depth: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {}
        chain = recipe.chain()
        for r in chain:
            data = merge_layer(data, r.config)
        for r in chain:
            data = merge_layer(data, r.datasets.get(dataset, {}))
        data = merge_layer(data, binding.set)
        for layer in extra:
            data = merge_layer(data, layer)
        for prof in recipe.profile_layers(self.ctx.profile):
            data = merge_layer(data, prof.set)
            data = merge_layer(data, prof.datasets.get(dataset, {}))
        for entry in self.ctx.overrides:
            scope = entry[2] if len(entry) > 2 else None
            if scope is not None:
                if not scope.matches(recipe.name, binding, dataset, cropped):
                    continue
                self.scopes_used.add(scope)
            data = merge_layer(data, entry[1])
        data = merge(data, {"seed": seed, "data": {"dataset": dataset}})
        if cropped:
            data = merge(data, {"data": {"cropped": True}})
        label = self._label(binding, dataset, cropped, seed)
        data = expand_sugar(data, label)
        teacher = get_path(data, "distill.teacher")
        if isinstance(teacher, dict) and "ref" in teacher:
            if depth > 3:
                raise ConfigError(f"{label}: distill.teacher: references nest too deep")
            tcfg = self.resolve_ref(teacher["ref"], teacher.get("set") or {}, dataset, cropped, seed,
                                    f"{label}: distill.teacher.ref", depth + 1)
            data["distill"]["teacher"] = C.to_dict(tcfg)
        return data

    def _label(self, binding: Binding, dataset: str, cropped: bool, seed: int) -> str:
        """Where a merged config came from, for its errors: the recipe's run, and the
        command-line overrides on top of it (a mistake may be in either)."""
        extra = sorted({entry[0] for entry in self.ctx.overrides})
        over = f", with {', '.join(extra)}" if extra else ""
        return (f"{binding.label} ({dataset}{', cropped' if cropped else ''}, seed {seed}, "
                f"profile {self.ctx.profile}{over})")

    def resolve(self, recipe: Recipe, binding: Binding, dataset: str, cropped: bool, seed: int,
                extra: Iterable[dict] = (), depth: int = 0) -> C.TrainConfig:
        data = self.merged(recipe, binding, dataset, cropped, seed, extra, depth)
        label = self._label(binding, dataset, cropped, seed)
        cfg = C.load_config(data, label)
        cfg = _apply_models(cfg, recipe.profile_layers(self.ctx.profile))
        return _set_root(C.normalize(cfg), self.ctx.data_root)

    def resolve_ref(self, ref: str, set_layer: dict, dataset: str, cropped: bool, seed: int,
                    where: str, depth: int) -> C.TrainConfig:
        name, _, row = ref.partition("#")
        if name not in self.catalog.recipe_names():
            raise ConfigError(f"{where}: no recipe '{name}'")
        recipe = self.catalog.recipe(name)
        if row not in recipe.rows:
            raise ConfigError(f"{where}: recipe '{name}' has no row '{row}'")
        bindings = recipe.rows[row].bindings
        binding = bindings[0]
        if len(bindings) > 1:
            table = self.catalog.table(recipe.table_key)
            matching = [b for b in bindings
                        if any(c.dataset == dataset for c in table.select_columns(b.where, b.label))]
            if len(matching) != 1:
                raise ConfigError(f"{where}: row '{row}' of '{name}' has several runs; cannot pick one")
            binding = matching[0]
        extra = [expand_dotted(set_layer)]
        return self.resolve(recipe, binding, dataset, cropped, seed, extra, depth)


@dataclass
class RowRun:
    """A binding resolved for one dataset: the columns it fills and how."""

    recipe: Recipe
    table: Table
    row: str
    binding: Binding
    dataset: str
    cropped: bool
    columns: list[Column]


def row_runs(catalog: Catalog, recipe: Recipe, ctx: Context) -> list[RowRun]:
    """Every (row, binding, dataset) of a recipe, honouring the row/dataset filters."""
    table = catalog.table(recipe.table_key)
    out = []
    for row in table.rows:
        if row.cited:
            continue
        if ctx.rows and row.name not in ctx.rows:
            continue
        rr = recipe.rows[row.name]
        for binding in rr.bindings:
            cols = table.select_columns(binding.where, f"{binding.label}.where")
            keys: list[tuple[str, bool]] = []
            for c in cols:
                if (c.dataset, c.cropped) not in keys:
                    keys.append((c.dataset, c.cropped))
            for dataset, cropped in keys:
                if ctx.datasets and dataset not in ctx.datasets:
                    continue
                group = [c for c in cols if c.dataset == dataset and c.cropped == cropped]
                out.append(RowRun(recipe, table, row.name, binding, dataset, cropped, group))
    return out


def expand(catalog: Catalog, recipes: list[Recipe], ctx: Context) -> list[RunSpec]:
    """Resolve recipes into run specs: deduplicated by hash, teachers before students."""
    if ctx.rows:
        known = {r.name for rec in recipes for r in catalog.table(rec.table_key).rows}
        for name in ctx.rows:
            if name not in known:
                raise ConfigError(f"--row {name}: no such row in {', '.join(r.name for r in recipes)}")
    resolver = Resolver(catalog, ctx)
    specs: dict[str, RunSpec] = {}

    def add(spec: RunSpec) -> RunSpec:
        existing = specs.get(spec.hash)
        if existing is None:
            specs[spec.hash] = spec
            return spec
        if existing.label.startswith("teacher for") and not spec.label.startswith("teacher for"):
            existing.label = spec.label
        for cell in spec.cells:
            if cell not in existing.cells:
                existing.cells.append(cell)
        for name in spec.recipes:
            if name not in existing.recipes:
                existing.recipes.append(name)
        return existing

    for recipe in recipes:
        for rr in row_runs(catalog, recipe, ctx):
            run_cols = [c for c in rr.columns if not c.is_stat]
            if not run_cols:
                continue
            for seed in ctx.seeds:
                cfg = resolver.resolve(recipe, rr.binding, rr.dataset, rr.cropped, seed)
                cells = [
                    Cell(recipe.paper, rr.table.id, rr.row, c.id,
                         rr.binding.sources.get(c.source, c.source), c.metric)
                    for c in run_cols
                ]
                label = f"{recipe.name} {rr.row} {rr.dataset}{' cropped' if rr.cropped else ''} seed {seed}"
                spec = RunSpec(config=cfg, paper=recipe.paper, profile=ctx.profile, label=label,
                               cells=cells, recipes=[recipe.name])
                if cfg.distill is not None:
                    teacher = RunSpec(config=cfg.distill.teacher, paper=recipe.paper, profile=ctx.profile,
                                      label=f"teacher for {label}", recipes=[recipe.name])
                    spec.teacher = add(teacher)
                add(spec)
    for entry in ctx.overrides:
        if len(entry) > 2 and entry[2] is not None and entry[2] not in resolver.scopes_used:
            raise ConfigError(
                f"{entry[0]}: scope ({entry[2].describe()}) matches none of the runs selected "
                f"({', '.join(r.name for r in recipes)}); select that run or edit the file's scope"
            )
    ordered = [s for s in specs.values() if s.config.method != "distill"]
    ordered += [s for s in specs.values() if s.config.method == "distill"]
    return ordered
