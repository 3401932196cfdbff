"""Recipes: a declarative configuration for every row of every paper table, and
their expansion into run specs.

- :mod:`~benchmark.recipes.files`: recipe files (Recipe, Binding, Profile) and the Catalog;
- :mod:`~benchmark.recipes.tables`: table files (the papers' printed numbers);
- :mod:`~benchmark.recipes.select`: selectors (``dm2/table1``, ``table1``, ``dm2/table*``, ...);
- :mod:`~benchmark.recipes.overrides`: ``--set``, ``--overrides`` files, scopes, the Context;
- :mod:`~benchmark.recipes.layers`: merging and checking partial config layers, recipe sugar;
- :mod:`~benchmark.recipes.resolve`: one binding -> one validated TrainConfig;
- :mod:`~benchmark.recipes.expand`: a selection -> deduplicated RunSpecs;
- :mod:`~benchmark.recipes.spec`: RunSpec, Cell, run identity (hashes) and variants;
- :mod:`~benchmark.recipes.yamlio`: safe YAML with one-line errors.

Format: recipes/README.md and tables/README.md.
"""

from benchmark.recipes.expand import CellBinding, RowRun, cell_bindings, expand, row_runs
from benchmark.recipes.files import Binding, Catalog, Profile, Recipe, RowRecipe, project_root
from benchmark.recipes.overrides import (
    PAPER_PROFILE,
    Context,
    Scope,
    load_overrides_file,
    override_layer,
    parse_overrides,
    parse_scope,
    parse_set,
)
from benchmark.recipes.resolve import Resolver
from benchmark.recipes.select import SELECTOR_HELP, match, select, select_tables
from benchmark.recipes.spec import Cell, RunSpec, config_hash, group_hash, series_hash, variant_text
from benchmark.recipes.tables import DATASET_NAMES, Column, Row, Table, load_table

__all__ = [
    "Binding", "Catalog", "Cell", "CellBinding", "Column", "Context", "DATASET_NAMES", "PAPER_PROFILE", "Profile",
    "Recipe", "Resolver", "Row", "RowRecipe", "RowRun", "RunSpec", "SELECTOR_HELP", "Scope", "Table",
    "cell_bindings", "config_hash", "expand", "group_hash", "load_overrides_file", "load_table", "match",
    "override_layer", "parse_overrides", "parse_scope", "parse_set", "project_root", "row_runs", "select",
    "select_tables", "series_hash", "variant_text",
]
