"""Trials: the job a study runs, the objective (one training through the runner's
``run_spec``, reported to Optuna each epoch), and the worker processes.

A :class:`TuneJob` holds everything a trial needs to rebuild its config (the
recipe row, the context with the validation split) and where to report (the
study's storage, the MLflow parent run). It is plain data so that worker
processes started with ``spawn`` receive it pickled and run trials on their own.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from benchmark import names as N
from benchmark.errors import UserError
from benchmark.tune.space import ParamSpec
from benchmark.tune.study import finished_states, make_pruner, open_storage, quiet_optuna


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
    parent_run_id: str
    data_root: Optional[str] = None
    device: str = "auto"
    pruner: str = "median"
    prune_warmup: int = 1
    prune_startup: int = 5
    sampler_seed: int = 0
    workers: int = 1
    ranks: int = 1  # processes per trial (a cohort over torch.distributed)
    extra: dict = field(default_factory=dict)

    @property
    def metric_key(self) -> str:
        return N.metric_key("val", self.source, self.metric)

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


def trial_spec(job: TuneJob, cfg, label: Optional[str] = None):
    """A trial's config as a bound run spec (a distillation trial's teacher included)."""
    from benchmark.recipes import RunSpec
    from benchmark.runner.binding import bind

    teacher = None
    if cfg.distill is not None:
        teacher = RunSpec(config=cfg.distill.teacher, paper=job.paper, profile=job.profile,
                          label=f"teacher for tuning {job.label}")
    spec = RunSpec(config=cfg, paper=job.paper, profile=job.profile, label=label or job.label, teacher=teacher)
    return bind(spec, data_root=job.data_root, device=job.device)


def load_study(job: TuneJob, seed: int):
    import optuna

    sampler = optuna.samplers.TPESampler(seed=seed)
    pruner = make_pruner(job.pruner, job.prune_warmup, job.prune_startup)
    return optuna.load_study(study_name=job.study, storage=open_storage(job.storage), sampler=sampler, pruner=pruner)


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
    """One trial: the tuned values suggested, the run trained by the runner's
    ``run_spec`` as a nested MLflow run of the study's parent run."""

    def __init__(self, job: TuneJob):
        from benchmark.recipes import Catalog
        from benchmark.runner.tracking import Tracker

        self.job = job
        self.catalog = Catalog(Path(job.catalog_root))
        self.tracker = Tracker(job.tracking_uri)

    def _tags(self, trial) -> dict[str, str]:
        from benchmark.runner.tracking import git_commit

        job = self.job
        return {
            N.TAG_PARENT: job.parent_run_id,
            N.TAG_RUN_NAME: f"{job.study} trial {trial.number}"[:250],
            N.TAG_TUNE_STUDY: job.study,
            N.TAG_TUNE_ROLE: "trial",
            N.TAG_TUNE_STATE: "running",
            N.TAG_TUNE_TRIAL: str(trial.number),
            "bench.tune.label": job.label,
            "bench.tune.metric": job.metric,
            "bench.tune.git_commit": git_commit(),
        }

    def _end(self, trial, state: str, note: str = "") -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            tags = {N.TAG_TUNE_STATE: state}
            if note:
                tags[N.TAG_TUNE_NOTE] = note[:5000]
            self.tracker.set_tags(run_id, tags)

    def __call__(self, trial) -> float:
        import optuna

        from benchmark.runner.local import run_spec

        job = self.job
        values = {p.key: p.suggest(trial) for p in job.space}
        spec = trial_spec(job, trial_config(job, values, self.catalog))
        trial.set_user_attr("pid", os.getpid())
        holder: dict[str, TrialLogger] = {}

        def wrap(base):
            trial.set_user_attr("mlflow_run_id", base.run_id)
            holder["logger"] = TrialLogger(base, trial, job.metric_key, job.metric)
            return holder["logger"]

        params = {f"tune.{k}": repr(v) if isinstance(v, float) else str(v) for k, v in values.items()}
        try:
            run_spec(spec, self.tracker, experiment=N.TUNE_EXPERIMENT, tags=self._tags(trial), params=params,
                     workdir=job.trial_dir(trial.number), logger=wrap, keep_files=False,
                     interrupted=(KeyboardInterrupt, optuna.TrialPruned), progress=False,
                     ranks=job.ranks if spec.config.method == "cohort" else 1)
            logger = holder["logger"]
            if logger.last_value is None:
                raise RuntimeError(f"trial {trial.number}: training logged no {job.metric_key}")
            trial.set_user_attr("epochs", logger.last_step)
            logger.inner.log_metrics({"tune/objective": logger.last_value}, step=logger.last_step or 0)
            self._end(trial, "complete")
            return logger.last_value
        except optuna.TrialPruned as exc:
            trial.set_user_attr("epochs", holder["logger"].last_step if holder else None)
            self._end(trial, "pruned", f"pruned at {exc}")
            raise
        except BaseException as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
            self._end(trial, "failed", f"{type(exc).__name__}: {exc}")
            raise


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


# ---------------------------------------------------------------------------
# running trials, with a progress bar
# ---------------------------------------------------------------------------


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def announce(t, metric: str, write) -> None:
    params = ", ".join(f"{k}={fmt_value(v)}" for k, v in t.params.items())
    state = t.state.name.lower()
    value = f"{metric} {t.value:.2f}" if t.value is not None else ""
    if state == "pruned" and t.intermediate_values:
        step = max(t.intermediate_values)
        value = f"{metric} {t.intermediate_values[step]:.2f} at epoch {step}"
    base = " (row's own values)" if t.user_attrs.get("baseline") else ""
    write(f"trial {t.number} {state}: {value} [{params}]{base}".replace(" : ", ": "))


class _Processes:
    """Trial workers as spawned processes on this machine."""

    def __init__(self, job: TuneJob, shares: list[int], seed0: int):
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self.procs = [ctx.Process(target=worker_main, args=(job, share, seed0 + i), name=f"tune-worker-{i}")
                      for i, share in enumerate(shares) if share > 0]
        for proc in self.procs:
            proc.start()

    def alive(self) -> bool:
        return any(proc.is_alive() for proc in self.procs)

    def failures(self) -> list[str]:
        for proc in self.procs:
            proc.join()
        return [proc.name for proc in self.procs if proc.exitcode != 0]


class _SlurmJobs:
    """Trial workers as Slurm jobs (one job array), sharing the study's storage: a
    journal file on the shared home or a database every node reaches."""

    def __init__(self, job: TuneJob, shares: list[int], seed0: int, settings, folder: Path):
        from benchmark.runner.slurm import SlurmDispatch

        dispatch = SlurmDispatch(settings, folder, label=f"tune-{job.study}"[:60])
        shares = [(share, seed0 + i) for i, share in enumerate(shares) if share > 0]
        with dispatch.executor.batch():
            self.jobs = [dispatch.executor.submit(worker_main, job, share, seed) for share, seed in shares]

    def alive(self) -> bool:
        return not all(j.done() for j in self.jobs)

    def failures(self) -> list[str]:
        out = []
        for j in self.jobs:
            try:
                j.result()
            except Exception:
                out.append(f"Slurm job {j.job_id} (log {j.paths.stderr})")
        return out


def run_trials(job: TuneJob, study, n: int, progress: bool, seed0: int, slurm=None,
               slurm_folder: Optional[Path] = None) -> None:
    """``n`` trials in this process (workers 1), shared among ``job.workers`` spawned
    processes, or among ``job.workers`` Slurm jobs (``slurm``: their settings)."""
    from tqdm.auto import tqdm

    if n <= 0:
        return
    bar = tqdm(total=n, desc=f"tune {job.study}"[:60], unit="trial", disable=not progress, file=sys.stderr)
    write = bar.write if progress else (lambda s: print(s, file=sys.stderr))

    def best_postfix():
        try:
            bar.set_postfix_str(f"best {job.metric} {study.best_value:.2f}", refresh=True)
        except ValueError:
            pass

    try:
        if job.workers <= 1 and slurm is None:
            def callback(st, t):
                announce(t, job.metric, write)
                bar.update(1)
                best_postfix()

            optimize(job, n, seed0, callbacks=[callback])
            return
        shares = [n // job.workers + (1 if i < n % job.workers else 0) for i in range(job.workers)]
        seen = {t.number for t in study.get_trials(deepcopy=False, states=finished_states())}
        workers = _SlurmJobs(job, shares, seed0, slurm, slurm_folder) if slurm is not None \
            else _Processes(job, shares, seed0)
        while True:
            alive = workers.alive()
            for t in study.get_trials(deepcopy=False, states=finished_states()):
                if t.number not in seen:
                    seen.add(t.number)
                    announce(t, job.metric, write)
                    bar.update(1)
                    best_postfix()
            if not alive:
                break
            time.sleep(1.0 if slurm is None else 5.0)
        failed = workers.failures()
        if failed:
            raise UserError(f"tuning worker(s) {', '.join(failed)} stopped with an error (see above); "
                            f"repeat the command to continue the study")
    finally:
        bar.close()
