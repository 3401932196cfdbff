"""Recipe files: parsing ``recipes/<paper>/<id>.yaml`` into :class:`Recipe` objects,
and the :class:`Catalog` of a project's recipes and table files.

Format: recipes/README.md. A recipe binds the rows of one table file to training
jobs (:class:`Binding`); profiles rescale them (:class:`Profile`).
"""

from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from benchmark import config as C
from benchmark.config import DATASETS, is_key
from benchmark.errors import ConfigError
from benchmark.recipes.layers import check_layer, expand_dotted
from benchmark.recipes.tables import Table, load_table
from benchmark.recipes.yamlio import load_yaml

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
    # A re-run of a cited row (another paper's method under this paper's protocol):
    # the table keeps the cited number, the report prints the re-run beside it.
    rerun: bool = False
    stated: dict[str, str] = field(default_factory=dict)  # key -> where the cited paper states it
    assumed: dict[str, str] = field(default_factory=dict)  # key -> why (the cited paper leaves it open)


@dataclass
class Profile:
    name: str
    description: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    arch_map: dict[str, str] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-dataset `set`
    # per-architecture `set`: applied to a job whose models include the arch (as the
    # recipe and the overrides name it, before arch_map), after `set` and `datasets`
    arch_set: dict[str, dict[str, Any]] = field(default_factory=dict)


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
_ROW_KEYS = {"set", "sources", "note", "runs", "rerun", "stated", "assumed"}
_RUN_KEYS = {"where", "set", "sources", "note"}
_PROFILE_KEYS = {"description", "set", "datasets", "arch_map", "arch_set", "models"}
# Fields a profile's `models` block may set on every model of a job (embedding
# models and ABE models share their names and types), with their annotation.
_MODEL_FIELDS = {**typing.get_type_hints(C.ABEConfig), **typing.get_type_hints(C.ModelConfig)}


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
    raw_models = data.get("models") or {}
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{where}.models: expected a mapping of model fields to values")
    models = {}
    for key, value in raw_models.items():
        if key not in _MODEL_FIELDS:
            raise ConfigError(f"{where}.models.{key}: not a model field (known: {', '.join(sorted(_MODEL_FIELDS))})")
        models[key] = C.convert(value, _MODEL_FIELDS[key], f"{where}.models.{key}")
    arch_map = data.get("arch_map") or {}
    if not isinstance(arch_map, dict) or not all(isinstance(v, str) for v in arch_map.values()):
        raise ConfigError(f"{where}.arch_map: expected a mapping of architecture names to architecture names")
    raw_datasets = data.get("datasets") or {}
    if not isinstance(raw_datasets, dict):
        raise ConfigError(f"{where}.datasets: expected a mapping of dataset -> layer")
    datasets = {}
    for ds, layer in raw_datasets.items():
        if ds not in DATASETS:
            raise ConfigError(f"{where}.datasets.{ds}: unknown dataset (known: {', '.join(DATASETS)})")
        datasets[ds] = _layer(layer, f"{where}.datasets.{ds}")
    raw_arch_set = data.get("arch_set") or {}
    if not isinstance(raw_arch_set, dict):
        raise ConfigError(f"{where}.arch_set: expected a mapping of architecture -> layer")
    arch_set = {str(arch): _layer(layer, f"{where}.arch_set.{arch}") for arch, layer in raw_arch_set.items()}
    return Profile(
        name=name,
        description=str(data.get("description", "")).strip(),
        set=_layer(data.get("set"), f"{where}.set"),
        arch_map={str(k): str(v) for k, v in arch_map.items()},
        models=models,
        datasets=datasets,
        arch_set=arch_set,
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
    rerun = data.get("rerun", False)
    if not isinstance(rerun, bool):
        raise ConfigError(f"{where}.rerun: expected true/false, got {rerun!r}")
    notes = {}
    for key in ("stated", "assumed"):
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping of config key -> text")
        for k in value:
            if not C.is_key(str(k)):
                raise ConfigError(f"{where}.{key}.{k}: not a config key")
        notes[key] = {str(k): " ".join(str(v).split()) for k, v in value.items()}
    return RowRecipe(name=name, bindings=bindings, note=str(data.get("note", "")).strip(), rerun=rerun,
                     stated=notes["stated"], assumed=notes["assumed"])


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

    def table(self, key: str) -> Table:
        if key not in self._tables:
            path = self.tables_dir / f"{key}.yaml"
            if key not in self.table_keys():  # also keeps '../x' and absolute names out of tables/
                raise ConfigError(f"{path}: table file not found (known: {', '.join(self.table_keys())})")
            table = load_table(path)
            if table.key != key:
                raise ConfigError(f"{path}: paper/id say '{table.key}', expected '{key}'")
            self._tables[key] = table
        return self._tables[key]

    def dataset_sizes(self) -> dict:
        """What the papers state about each dataset split (tables/datasets.yaml)."""
        from benchmark.recipes.tables import load_dataset_sizes

        return load_dataset_sizes(self.tables_dir / "datasets.yaml")

    def table_keys(self) -> list[str]:
        from benchmark.recipes.claims import CLAIMS_FILE

        return [f"{p.parent.name}/{p.stem}" for p in sorted(self.tables_dir.glob("*/*.yaml")) if p.name != CLAIMS_FILE]

    def claims(self, papers: Optional[list[str]] = None) -> list:
        """Every claim of the papers' claims files (tables/<paper>/claims.yaml)."""
        from benchmark.recipes.claims import CLAIMS_FILE, load_claims

        out = []
        for path in sorted(self.tables_dir.glob(f"*/{CLAIMS_FILE}")):
            if papers is None or path.parent.name in papers:
                out += load_claims(path, self)
        return out

    def tables(self) -> list[Table]:
        return [self.table(k) for k in self.table_keys()]

    def recipe_for_table(self, key: str) -> Optional["Recipe"]:
        """The recipe that runs table ``key`` (its own name first), or None: no recipe yet."""
        names = self.recipe_names()
        for name in ([key] if key in names else []) + [n for n in names if n != key]:
            recipe = self.recipe(name)
            if recipe.table_key == key:
                return recipe
        return None

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
            if ds not in DATASETS:
                raise ConfigError(f"{where}: datasets.{ds}: unknown dataset (known: {', '.join(DATASETS)})")
            datasets[ds] = _layer(layer, f"{where}: datasets.{ds}")
        assumed = {}
        for key, why in (data.get("assumed") or {}).items():
            if not is_key(str(key)):
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
            if table.row(name).cited and not recipe.rows[name].rerun:
                raise ConfigError(f"{recipe.path}: rows.{name}: a cited row is never run (unless it is "
                                  f"re-run under this paper's protocol: rerun: true)")
            if recipe.rows[name].rerun and not table.row(name).cited:
                raise ConfigError(f"{recipe.path}: rows.{name}.rerun: only a cited row is re-run")
        for name in own:
            if name not in recipe.rows:
                raise ConfigError(f"{recipe.path}: rows: no recipe for row '{name}' of {table.path}")
