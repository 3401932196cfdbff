"""Expansion: a selection of recipes under a context into deduplicated run specs
(teachers before students), and the table cells each recipe binding fills."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.errors import ConfigError
from benchmark.recipes.files import Binding, Catalog, Recipe
from benchmark.recipes.overrides import Context
from benchmark.recipes.resolve import Resolver
from benchmark.recipes.spec import Cell, RunSpec
from benchmark.recipes.tables import Column, Table


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
        if row.cited and not (row.name in recipe.rows and recipe.rows[row.name].rerun):
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


@dataclass(frozen=True)
class CellBinding:
    """How a recipe fills one table cell: the binding, dataset, cropping and logged source."""

    recipe: Recipe
    binding: Binding
    dataset: str
    cropped: bool
    column: Column
    source: str


def cell_bindings(catalog: Catalog, recipe: Recipe) -> dict[tuple[str, str], CellBinding]:
    """(row, column id) -> how the recipe fills that cell, for every non-cited or re-run row."""
    out: dict[tuple[str, str], CellBinding] = {}
    for rr in row_runs(catalog, recipe, Context()):
        for c in rr.columns:
            out[(rr.row, c.id)] = CellBinding(recipe, rr.binding, rr.dataset, rr.cropped, c,
                                              rr.binding.sources.get(c.source, c.source))
    return out
