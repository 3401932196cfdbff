"""Optuna tuning of the hand-set weights (``python -m benchmark tune``).

- :mod:`benchmark.tune.space`: search spaces (``--param KEY=LOW:HIGH[:log]``, the default λ space);
- :mod:`benchmark.tune.study`: storages, pruners;
- :mod:`benchmark.tune.target`: which run a selection tunes;
- :mod:`benchmark.tune.trials`: the trial objective (through the runner), worker processes;
- :mod:`benchmark.tune.results`: summary, MLflow parent run, the best values as overrides;
- :mod:`benchmark.tune.command`: the command (``add_parser``, ``cmd_tune``);
- :mod:`benchmark.tune.report`: the report's tuning pages (``report_entries``).

Optuna is imported only in this package.
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub, add_selection, add_executor):
    from benchmark.tune.command import add_parser as _add

    return _add(sub, add_selection, add_executor)


def cmd_tune(args, catalog, recipes, ctx) -> int:
    from benchmark.tune.command import cmd_tune as _cmd

    return _cmd(args, catalog, recipes, ctx)


def report_entries(out_dir: Path) -> list:
    from benchmark.tune.report import report_entries as _entries

    return _entries(out_dir)


__all__ = ["add_parser", "cmd_tune", "report_entries"]
