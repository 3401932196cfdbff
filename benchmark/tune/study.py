"""Optuna side of tuning: storages, studies, pruners, and the trial objective.

A :class:`TuneJob` holds everything a trial needs to rebuild its config (the
recipe row, the context with the validation split) and where to report (the
study's storage, the MLflow parent run). It is plain data so that worker
processes started with ``spawn`` receive it pickled and run trials on their own.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from benchmark.errors import ConfigError, UserError
from benchmark.tune.space import ParamSpec

TAG_STUDY = "bench.tune.study"
TAG_ROLE = "bench.tune.role"
TAG_STATE = "bench.tune.state"
TAG_STORAGE = "bench.tune.storage"
TUNE_EXPERIMENT = "tune"
METRIC_KEYS = {"recall@1": "recall_at_1", "map@r": "map_at_r"}


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


# ---------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------


@dataclass
class TuneJob:
    """What a trial needs, as plain (picklable) data."""

    study: str
    storage: str
    catalog_root: str
    recipe: str
    row: str
    binding: int
    dataset: str
    cropped: bool
    ctx: Any  # benchmark.recipes.Context, with the validation split among its overrides
    space: list[ParamSpec]
    metric: str  # recall@1 | map@r
    source: str  # ensemble | student
    label: str
    paper: str
    profile: str
    home: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    device: str = "auto"
    teacher_weights: Optional[str] = None
    pruner: str = "median"
    prune_warmup: int = 1
    prune_startup: int = 5
    sampler_seed: int = 0
    workers: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def metric_key(self) -> str:
        return f"val/{self.source}/{METRIC_KEYS[self.metric]}"

    def trial_dir(self, number: int) -> Path:
        return Path(self.home) / "tune" / self.study / f"trial-{number}"


def trial_config(job: TuneJob, values: Mapping[str, Any], catalog=None):
    """The resolved config of a trial: the row under the job's context plus the tuned values
    as the last override layers (exactly what `run --overrides best.yaml` applies)."""
    from benchmark.recipes import Catalog, Resolver, override_layer

    catalog = catalog or Catalog(Path(job.catalog_root))
    layers = [override_layer(k, v, f"tuned {k}") for k, v in values.items()]
    ctx = dataclasses.replace(job.ctx, overrides=list(job.ctx.overrides) + layers, seeds=[0])
    recipe = catalog.recipe(job.recipe)
    binding = recipe.rows[job.row].bindings[job.binding]
    return Resolver(catalog, ctx).resolve(recipe, binding, job.dataset, job.cropped, 0)


def load_study(job: TuneJob, seed: int):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = make_pruner(job.pruner, job.prune_warmup, job.prune_startup)
    return optuna.load_study(study_name=job.study, storage=open_storage(job.storage), sampler=sampler, pruner=pruner)


# ---------------------------------------------------------------------------
# the objective
# ---------------------------------------------------------------------------


class TrialLogger:
    """The training core's logger for a trial: every metric goes to the trial's MLflow run;
    the validation metric is reported to Optuna each epoch, and a trial the pruner
    gives up on stops training by raising optuna.TrialPruned."""

    def __init__(self, inner, trial, key: str, metric: str):
        self.inner = inner
        self.trial = trial
        self.key = key
        self.metric = metric
        self.last_value: Optional[float] = None
        self.last_step: Optional[int] = None

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import optuna

        self.inner.log_metrics(metrics, step)
        if self.key not in metrics:
            return
        value = float(metrics[self.key])
        self.last_value, self.last_step = value, int(step)
        self.trial.report(value, int(step))
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {step}: {self.metric} {value:.2f}")

    def log_artifact(self, path: Path, subdir: Optional[str] = None) -> None:
        """Trials keep no files: their working folders are deleted (disk stays small)."""


class Objective:
    def __init__(self, job: TuneJob):
        from benchmark.recipes import Catalog
        from benchmark.runner.tracking import Tracker

        self.job = job
        self.catalog = Catalog(Path(job.catalog_root))
        self.tracker = Tracker(job.tracking_uri)

    def _start_run(self, trial, values: dict, cfg) -> str:
        from mlflow.entities import Param

        from benchmark.config import to_dict
        from benchmark.runner.tracking import flatten, git_commit

        job = self.job
        tags = {
            "mlflow.parentRunId": job.parent_run_id,
            "mlflow.runName": f"{job.study} trial {trial.number}"[:250],
            TAG_STUDY: job.study,
            TAG_ROLE: "trial",
            TAG_STATE: "running",
            "bench.tune.trial": str(trial.number),
            "bench.tune.label": job.label,
            "bench.tune.metric": job.metric,
            "bench.tune.git_commit": git_commit(),
        }
        run = self.tracker.client.create_run(job.experiment_id, tags=tags)
        params = {f"tune.{k}": repr(v) if isinstance(v, float) else str(v) for k, v in values.items()}
        params.update(flatten(to_dict(cfg)))
        items = [Param(k[:250], v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.tracker.client.log_batch(run.info.run_id, params=items[i: i + 100])
        return run.info.run_id

    def _end_run(self, run_id: str, state: str, status: str, note: str = "") -> None:
        client = self.tracker.client
        client.set_tag(run_id, TAG_STATE, state)
        if note:
            client.set_tag(run_id, "bench.tune.note", note[:5000])
        client.set_terminated(run_id, status=status)

    def __call__(self, trial) -> float:
        import optuna

        from benchmark.runner.local import _with_runtime
        from benchmark.runner.tracking import MlflowLogger
        from benchmark.spec import RunSpec
        from benchmark.train import train

        job = self.job
        values = {p.key: p.suggest(trial) for p in job.space}
        cfg = trial_config(job, values, self.catalog)
        spec = _with_runtime(RunSpec(config=cfg, paper=job.paper, profile=job.profile, label=job.label), job.device)
        run_id = self._start_run(trial, values, spec.config)
        trial.set_user_attr("mlflow_run_id", run_id)
        trial.set_user_attr("pid", os.getpid())
        workdir = job.trial_dir(trial.number)
        shutil.rmtree(workdir, ignore_errors=True)
        logger = TrialLogger(MlflowLogger(self.tracker, run_id), trial, job.metric_key, job.metric)
        inputs = {"teacher": Path(job.teacher_weights)} if job.teacher_weights else {}
        try:
            train(spec.config, logger, workdir, inputs, progress=False, desc=f"trial {trial.number}")
            if logger.last_value is None:
                raise RuntimeError(f"trial {trial.number}: training logged no {job.metric_key}")
            trial.set_user_attr("epochs", logger.last_step)
            logger.inner.log_metrics({"tune/objective": logger.last_value}, step=logger.last_step or 0)
            self._end_run(run_id, "complete", "FINISHED")
            return logger.last_value
        except optuna.TrialPruned as exc:
            trial.set_user_attr("epochs", logger.last_step)
            self._end_run(run_id, "pruned", "KILLED", f"pruned at {exc}")
            raise
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            self._end_run(run_id, "failed", "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED",
                          f"{type(exc).__name__}: {exc}")
            raise
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def optimize(job: TuneJob, n_trials: int, seed: int, callbacks=()) -> None:
    """Run ``n_trials`` trials of the job's study in this process."""
    quiet_optuna()
    study = load_study(job, seed)
    # A diverging trial (FloatingPointError from the training loop) fails on its own;
    # the study goes on.
    study.optimize(Objective(job), n_trials=n_trials, catch=(FloatingPointError,), callbacks=list(callbacks))


def worker_main(job: TuneJob, n_trials: int, seed: int) -> None:
    """Entry point of a spawned worker process: its share of the trials, one after the other."""
    import torch

    os.environ["BENCHMARK_HOME"] = job.home
    threads = os.environ.get("OMP_NUM_THREADS")
    try:
        n = int(threads) if threads else max(1, (os.cpu_count() or 1) // max(job.workers, 1))
    except ValueError:
        n = 1
    torch.set_num_threads(max(n, 1))
    try:
        optimize(job, n_trials, seed)
    except UserError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        raise SystemExit(exc.exit_code)
    except KeyboardInterrupt:
        raise SystemExit(130)
