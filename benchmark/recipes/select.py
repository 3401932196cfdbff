"""Selectors: which recipes (for ``run``, ``plan``, ``tune``, ``stats``) or tables
(for ``report``, ``paper``) a command works on.

A selector is a comma list of parts, each one of:
  all                  every table of every paper
  dm2                  a paper: all its tables and figures
  dm2/table1           one table (or recipe) of a paper
  table1               a bare table or figure name: that table in every paper
                       that has it (dm2/table1, abe/table1)
  dm2/table*, */figure5, table?   globs over 'paper/name' (or over bare names)
"""

from __future__ import annotations

import fnmatch
from typing import Optional

from benchmark.errors import ConfigError
from benchmark.recipes.files import Catalog, Recipe
from benchmark.recipes.tables import Table

SELECTOR_HELP = ("dm2/table1 | dm2 (a paper) | table1 (that table in every paper) | all | globs such as "
                 "'dm2/table*' or '*/figure5' | a comma list")
_GLOB = set("*?[")


def match(selector: str, keys: list[str], what: str) -> list[str]:
    """The keys ('paper/name') a selector names, in selector order then key order.
    ``what`` names the kind of key in errors ('recipe', 'table')."""
    papers = sorted({k.split("/")[0] for k in keys})
    out: list[str] = []
    parts = [s.strip() for s in str(selector).split(",") if s.strip()]
    if not parts:
        raise ConfigError(f"'{selector}': an empty selector (use e.g. dm2/table1, dm2, table1 or all)")
    for part in parts:
        if part == "all":
            found = list(keys)
        elif _GLOB & set(part):
            pattern = part if "/" in part else f"*/{part}"
            found = [k for k in keys if fnmatch.fnmatchcase(k, pattern)]
            if not found:
                raise ConfigError(f"{part}: matches no {what} (known: {', '.join(keys)})")
        elif "/" in part:
            if part not in keys:
                raise ConfigError(f"{part}: no such {what} (known: {', '.join(keys)})")
            found = [part]
        elif part in papers:
            found = [k for k in keys if k.split("/")[0] == part]
        else:
            found = [k for k in keys if k.split("/", 1)[1] == part]
            if not found:
                names = sorted({k.split("/", 1)[1] for k in keys})
                raise ConfigError(f"{part}: no such paper or {what} (papers: {', '.join(papers)}; "
                                  f"{what}s: {', '.join(names)})")
        out += [k for k in found if k not in out]
    return out


def select(catalog: Catalog, selector: str, profile: Optional[str] = None) -> list[Recipe]:
    """The runnable recipes a selector names; with ``profile``, each must define it."""
    names = catalog.recipe_names()
    runnable = catalog.runnable_names()
    parts = [s.strip() for s in str(selector).split(",") if s.strip()]
    for part in parts:  # an explicit defaults file is a mistake worth its own message
        if "/" in part and not (_GLOB & set(part)) and part in names and part not in runnable:
            raise ConfigError(f"{catalog.recipe(part).path}: a defaults file has no table to run")
        if "/" in part and not (_GLOB & set(part)) and part not in names:
            raise ConfigError(f"{part}: no such recipe (no file {catalog.recipes_dir / (part + '.yaml')}); "
                              f"known: {', '.join(runnable)}")
    recipes = [catalog.recipe(n) for n in match(selector, runnable, "recipe")]
    if profile is not None:
        for r in recipes:
            if profile not in r.profile_names():
                raise ConfigError(f"--profile {profile}: {r.name} has no such profile "
                                  f"(known: {', '.join(r.profile_names())})")
    return recipes


def select_tables(catalog: Catalog, selector: str = "all") -> list[tuple[Table, Optional[Recipe]]]:
    """The tables a selector names, each with the recipe that runs it (None: no recipe yet).
    Unlike :func:`select` this includes tables without a recipe (their paper numbers
    are still reported); a recipe name selects the table it runs."""
    keys = catalog.table_keys()
    extra = [n for n in catalog.recipe_names() if n not in keys and catalog.recipe(n).runnable]
    out: list[tuple[Table, Optional[Recipe]]] = []
    for key in match(selector, keys + extra, "table"):
        if key in extra:
            key = catalog.recipe(key).table_key
        if any(t.key == key for t, _ in out):
            continue
        out.append((catalog.table(key), catalog.recipe_for_table(key)))
    return out
