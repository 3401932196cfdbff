"""Optuna's side of tuning: storages, studies, pruners."""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import ConfigError, UserError

METRICS = ("recall@1", "map@r")  # objectives a study can maximise


# ---------------------------------------------------------------------------
# storages and studies
# ---------------------------------------------------------------------------


def default_storage_dir() -> Path:
    from benchmark.runner.home import benchmark_home

    return benchmark_home() / "optuna"


def default_storage(study: str) -> str:
    return str(default_storage_dir() / f"{study}.log")


def open_storage(spec: str):
    """An Optuna storage from ``spec``: a URL with '://' (RDB, e.g. sqlite:///x.db) as Optuna
    reads it, anything else a journal file path (file-based, safe for parallel processes)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if "://" in spec:
        try:
            return optuna.storages.get_storage(spec)
        except Exception as exc:  # a bad URL or an unreachable database is the user's to fix
            raise UserError(f"--storage {spec}: cannot open ({' '.join(str(exc).split())[:200]})") from None
    path = Path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_pruner(spec: str, warmup: int, startup: int):
    """median (MedianPruner) | none | below:X (ThresholdPruner: prune below X, in percent)."""
    import optuna

    if spec == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    if spec == "none":
        return optuna.pruners.NopPruner()
    if spec.startswith("below:"):
        try:
            lower = float(spec.split(":", 1)[1])
        except ValueError:
            raise ConfigError(f"--pruner {spec}: expected below:X with X a number") from None
        return optuna.pruners.ThresholdPruner(lower=lower, n_warmup_steps=warmup)
    raise ConfigError(f"--pruner {spec}: expected median, none or below:X")


def quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def finished_states():
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
